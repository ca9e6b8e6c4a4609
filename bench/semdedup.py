"""Semantic dedup (`dedup: semantic`): duplicate-removal quality on real photos, and cost at 1M embeddings.

Quality (`quality`): source images from packages that ship them offline, each with labeled variants that a
scraped copy goes through (two crops, two scales, a horizontal flip, two slight colour shifts, a simulated
second shot: small camera move, rotation and perspective), embedded with `LiteEmbedder` (the embedding the
`embedding` filter stores). eps is tuned on the tune set (best pairwise F1) and reported on the report set,
built from different source images::

    tune:   scikit-image photos (astronaut, coffee, chelsea, rocket, camera, motorcycle stereo pair, brick,
            grass), every other KDE wallpaper under /usr/share/wallpapers, procedural landscapes (seeds 0-9)
    report: scikit-learn's china and flower, MATE nature and abstract backgrounds (/usr/share/backgrounds/mate),
            the other KDE wallpapers, scikit-image gravel, procedural landscapes (seeds 100-109)

Groups come from `flywheel.select.semantic_dedup.semantic_groups` (the rule's code: seeded k-means, default
sqrt(n) clusters, exact cosine within clusters). The kept member of a group is the one with most pixels (the
recipe default). Reported per category: recall (the variant ends in its source's group), false merges (it
ends in a group with another source), and removal precision/recall (a removed image is correct when the kept
member of its group is of the same source).

    PYTHONPATH=$PWD python3 bench/semdedup.py quality --out docs/semdedup.json

Cost (`scale`): synthetic clustered unit vectors (1280-d float32; not real embeddings, so the pair counts
are not a quality figure), 5% of rows near copies (cosine distance 0.005-0.05) of other rows; the rule's
grouping is timed in a fresh process and the peak RSS reported (it includes the vectors themselves)::

    PYTHONPATH=$PWD nice -n 10 python3 bench/semdedup.py scale --rows 100000 --rows 1000000

End to end (`select`): the same vectors in a pool's `image_embedding` column, then `flywheel select` with only
the semantic rule in a fresh process (reading the column from the shards included)::

    PYTHONPATH=$PWD nice -n 10 python3 bench/semdedup.py select --rows 100000 --out /tmp/semdedup-pool
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flywheel.recipes.recipe import SEMANTIC_EPS  # noqa: E402
from flywheel.select.semantic_dedup import PROBES, cluster_count, semantic_groups  # noqa: E402

WORK_SHORT_SIDE = 512  # sources are shrunk to this before the variants are cut
CATEGORIES = ("crop", "scale", "flip", "colour", "shot")
EPS_GRID = tuple(round(e, 3) for e in (*np.arange(0.01, 0.10, 0.01), *np.arange(0.10, 0.31, 0.02)))
KDE = Path("/usr/share/wallpapers")
MATE = Path("/usr/share/backgrounds/mate")
MACHINE = "2-core x86_64 container, no GPU"


@dataclass
class Item:
    source: str  # one scene: every item of a source is a duplicate of the others
    category: str  # original | crop | scale | flip | colour | shot
    rgb: np.ndarray


def _shrink(img: Image.Image) -> Image.Image:
    img = img.convert("RGB")
    scale = WORK_SHORT_SIDE / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return img


def _array_image(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return _shrink(Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8)))


def _kde(parity: int) -> list[tuple[str, Image.Image]]:
    """Every other KDE wallpaper theme (sorted), each its smallest image of at least 640 px."""
    out = []
    themes = sorted(p for p in KDE.glob("*/contents/images") if p.is_dir()) if KDE.is_dir() else []
    for theme in themes[parity::2]:
        files = [f for f in theme.iterdir() if f.suffix.lower() in (".jpg", ".png")]
        sizes = [(int(f.stem.split("x")[0]) * int(f.stem.split("x")[1]), f) for f in files if "x" in f.stem]
        usable = sorted((s, f) for s, f in sizes if s >= 640 * 480)
        if usable:
            with Image.open(usable[0][1]) as img:
                out.append((f"kde_{theme.parent.parent.name}", _shrink(img)))
    return out


def _mate() -> list[tuple[str, Image.Image]]:
    """MATE nature and abstract backgrounds (one file per picture: the Elephants copies are one; no transparent
    PNGs)."""
    out = []
    for folder in ("nature", "abstract"):
        for f in sorted((MATE / folder).glob("*")) if (MATE / folder).is_dir() else []:
            if f.suffix.lower() not in (".jpg", ".png") or f.stem.startswith("Elephants_"):
                continue
            with Image.open(f) as img:
                if img.mode in ("RGBA", "LA") or "transparency" in img.info:
                    continue  # transparent PNGs: their RGB planes under the alpha are one blank picture
                out.append((f"mate_{folder}_{f.stem}", _shrink(img)))
    return out


def _landscapes(seeds: range) -> list[tuple[str, Image.Image]]:
    from corpus.hard import landscape

    return [(f"proc_{s}", landscape(np.random.default_rng(s))) for s in seeds]


def sources(split: str) -> list[tuple[str, Image.Image]]:
    from skimage import data

    if split == "tune":
        photos = [(f"sk_{n}", _array_image(getattr(data, n)())) for n in ("astronaut", "coffee", "chelsea")]
        photos += [(f"sk_{n}", _array_image(getattr(data, n)())) for n in ("rocket", "camera", "brick", "grass")]
        left, _right, _ = data.stereo_motorcycle()
        photos.append(("sk_motorcycle", _array_image(left)))
        return photos + _kde(0) + _landscapes(range(10))
    from sklearn.datasets import load_sample_image

    photos = [(f"skl_{n}", _array_image(load_sample_image(f"{n}.jpg"))) for n in ("china", "flower")]
    photos.append(("sk_gravel", _array_image(data.gravel())))
    return photos + _mate() + _kde(1) + _landscapes(range(100, 110))


def _crop(img: Image.Image, rng: np.random.Generator, lo: float, hi: float) -> Image.Image:
    w, h = img.size
    area = rng.uniform(lo, hi)
    aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    cw, ch = min(w, round(w * np.sqrt(area * aspect))), min(h, round(h * np.sqrt(area / aspect)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def _colour(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Slight colour shift: brightness, saturation and a per-channel gain of a few percent."""
    out = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.88, 1.12)))
    out = ImageEnhance.Color(out).enhance(float(rng.uniform(0.8, 1.2)))
    gain = rng.uniform(0.94, 1.06, 3)
    return Image.fromarray(np.clip(np.asarray(out, dtype=np.float32) * gain, 0, 255).astype(np.uint8))


def _shot(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A second shot of the scene: rotated a few degrees, perspective-warped, framed 10% off."""
    w, h = img.size
    out = img.rotate(float(rng.uniform(-4, 4)), resample=Image.Resampling.BILINEAR, expand=False)
    d = 0.05
    quad = [rng.uniform(0, d) * w, rng.uniform(0, d) * h, rng.uniform(0, d) * w, h - rng.uniform(0, d) * h]
    quad += [w - rng.uniform(0, d) * w, h - rng.uniform(0, d) * h, w - rng.uniform(0, d) * w, rng.uniform(0, d) * h]
    out = out.transform((w, h), Image.Transform.QUAD, [float(v) for v in quad], Image.Resampling.BILINEAR)
    return _crop(out, rng, 0.7, 0.8)


def variants(name: str, img: Image.Image, seed: int) -> Iterator[Item]:
    """The original and its eight labeled variants (deterministic per source name)."""
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    yield Item(name, "original", np.asarray(img))
    for lo, hi in ((0.5, 0.7), (0.7, 0.9)):
        yield Item(name, "crop", np.asarray(_crop(img, rng, lo, hi)))
    for f in (0.5, 0.3):
        yield Item(name, "scale", np.asarray(img.resize((round(img.width * f), round(img.height * f)))))
    yield Item(name, "flip", np.asarray(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    for _ in range(2):
        yield Item(name, "colour", np.asarray(_colour(img, rng)))
    yield Item(name, "shot", np.asarray(_shot(img, rng)))


def evaluate(
    items: list[Item], x: np.ndarray, eps: float, clusters: int | None = None, probes: int = PROBES
) -> dict[str, dict[str, float]]:
    """Per category and overall: recall, false merges, pairwise P/R, and removal P/R with most-pixels kept."""
    groups, stats = semantic_groups(x, eps, clusters=clusters, probes=probes)
    n = len(items)
    group = np.array([groups.get(i, i) for i in range(n)])
    src = np.array([it.source for it in items])
    cat = np.array([it.category for it in items])
    pixels = np.array([it.rgb.shape[0] * it.rgb.shape[1] for it in items])
    original_group = {s: group[(src == s) & (cat == "original")][0] for s in set(src)}
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group):
        members.setdefault(int(g), []).append(i)
    kept = {g: max(m, key=lambda i: (pixels[i], -i)) for g, m in members.items()}
    removed = np.array([kept[int(group[i])] != i for i in range(n)])
    correct = np.array([removed[i] and src[kept[int(group[i])]] == src[i] for i in range(n)])
    out: dict[str, dict[str, float]] = {}
    for c in (*CATEGORIES, "original"):
        m = cat == c
        row = {"images": int(m.sum())}
        if c != "original":
            row["recall"] = float(np.mean([group[i] == original_group[src[i]] for i in np.flatnonzero(m)]))
        row["false_merge"] = float(np.mean([_merged_away(i, members, src, group) for i in np.flatnonzero(m)]))
        out[c] = row
    family = np.array([_family(it.source) for it in items])
    for f in sorted(set(family)):
        m = (family == f) & (cat != "original")
        out[f"family:{f}"] = {
            "images": int((family == f).sum()),
            "recall": float(np.mean([group[i] == original_group[src[i]] for i in np.flatnonzero(m)])),
            "false_merge": float(np.mean([_merged_away(i, members, src, group) for i in np.flatnonzero(family == f)])),
        }
    same = src[:, None] == src[None, :]
    pred = group[:, None] == group[None, :]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    tp = int((same & pred & upper).sum())
    out["all"] = {
        "images": n,
        "sources": len(set(src)),
        "pair_precision": tp / max(1, int((pred & upper).sum())),
        "pair_recall": tp / max(1, int((same & upper).sum())),
        "removal_precision": float(correct.sum() / max(1, removed.sum())),
        "removal_recall": float(correct.sum() / (n - len(set(src)))),
        "clusters": stats.clusters,
        "pairs": stats.pairs,
    }
    p, r = out["all"]["pair_precision"], out["all"]["pair_recall"]
    out["all"]["pair_f1"] = 2 * p * r / max(p + r, 1e-12)
    return out


def _family(source: str) -> str:
    """photo (scikit-image, scikit-learn, MATE nature), wallpaper (KDE, MATE abstract: art and photos), procedural."""
    if source.startswith("proc_"):
        return "procedural"
    if source.startswith(("kde_", "mate_abstract_")):
        return "wallpaper"
    return "photo"


def _merged_away(i: int, members: dict[int, list[int]], src: np.ndarray, group: np.ndarray) -> bool:
    """True when item i shares its group with an item of another source."""
    return any(src[j] != src[i] for j in members[int(group[i])])


def distance_summary(items: list[Item], x: np.ndarray) -> dict[str, dict[str, float]]:
    """Cosine distance of each variant to its original, and of each original to its nearest other source."""
    src = np.array([it.source for it in items])
    cat = np.array([it.category for it in items])
    orig = {s: int(np.flatnonzero((src == s) & (cat == "original"))[0]) for s in set(src)}
    out = {}
    for c in CATEGORIES:
        d = [1 - float(x[i] @ x[orig[src[i]]]) for i in np.flatnonzero(cat == c)]
        out[c] = {"median": float(np.median(d)), "max": float(np.max(d))}
    sims = x @ x.T
    sims[src[:, None] == src[None, :]] = -1
    nearest = 1 - sims[[orig[s] for s in sorted(orig)]].max(axis=1)
    out["distinct_nearest_other"] = {"min": float(nearest.min()), "median": float(np.median(nearest))}
    return out


def run_quality(args: argparse.Namespace) -> dict:
    from flywheel.aesthetics.embed import LiteEmbedder

    embedder = LiteEmbedder(device="cpu")
    result: dict = {"machine": MACHINE, "command": "PYTHONPATH=$PWD python3 bench/semdedup.py quality", "sets": {}}
    data = {}
    for split in ("tune", "report"):
        started = time.perf_counter()
        items = [it for name, img in sources(split) for it in variants(name, img, args.seed)]
        x = embedder.embed([it.rgb for it in items])
        data[split] = (items, x)
        print(f"{split}: {len(items)} images, embedded in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    items, x = data["tune"]
    sweep = {eps: evaluate(items, x, eps)["all"] for eps in EPS_GRID}
    best = max(EPS_GRID, key=lambda e: (round(sweep[e]["pair_f1"], 4), -e))
    result["eps"] = best
    # A safety margin, on the tune set alone: the largest eps whose precision stays 1.0 up to 1.4 x eps.
    safe = [e for e in EPS_GRID if all(sweep[f]["pair_precision"] == 1.0 for f in EPS_GRID if f <= 1.4 * e + 1e-9)]
    result["eps_margin_rule"] = max(safe) if safe else None
    result["recipe_default_eps"] = SEMANTIC_EPS
    result["tune_sweep"] = {str(e): {k: round(v, 4) for k, v in s.items()} for e, s in sweep.items()}
    for split in ("tune", "report"):
        items, x = data[split]
        result["sets"][split] = {
            "sources": sorted({it.source for it in items}),
            "at_eps": evaluate(items, x, best),
            "at_default_eps": evaluate(items, x, SEMANTIC_EPS),
            "distances": distance_summary(items, x),
        }
    report_items, report_x = data["report"]
    # What clustering costs in pairs: the rule (probes 1 and 3) against one cluster (exact all-pairs).
    result["clustering"] = {
        name: {
            split: {
                k: round(v, 4) for k, v in evaluate(*data[split], best, clusters=clusters, probes=probes)["all"].items()
            }
            for split in ("tune", "report")
        }
        for name, clusters, probes in (("home_only", None, 1), ("rule", None, PROBES), ("exact", 1, 1))
    }
    result["report_sweep"] = {
        str(e): {k: round(v, 4) for k, v in evaluate(report_items, report_x, e)["all"].items()} for e in EPS_GRID
    }
    return result


def synthetic(rows: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors: rows/100 centres, spread 0.6; 5% of rows are near copies of earlier rows."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, rows // 100), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((rows, dim), dtype=np.float32)
    block = 50_000
    for start in range(0, rows, block):
        n = min(block, rows - start)
        v = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, dim), dtype=np.float32) * (
            0.6 / np.sqrt(dim)
        )
        x[start : start + n] = v / np.linalg.norm(v, axis=1, keepdims=True)
    copies = rng.choice(rows, size=rows // 20, replace=False)
    for start in range(0, len(copies), block):
        idx = copies[start : start + block]
        src = x[rng.integers(0, rows, len(idx))]
        noise = rng.standard_normal(src.shape, dtype=np.float32)
        noise -= (noise * src).sum(axis=1, keepdims=True) * src
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        cos = 1.0 - rng.uniform(0.005, 0.05, (len(idx), 1)).astype(np.float32)
        x[idx] = cos * src + np.sqrt(1 - cos**2) * noise
    return x


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_scale_one(rows: int, eps: float, seed: int, check: bool) -> dict:
    """One size in this process: generation (not timed), then the rule's grouping, timed.

    Memory: RSS sampled every 20 ms while the rule runs (the generator's temporaries are freed before), so
    `peak_rss_mb` is the vectors plus what the rule adds. With `check`, pairs are compared with all-pairs.
    """
    import gc
    import threading

    x = synthetic(rows, 1280, seed)
    gc.collect()
    base_rss = _rss_mb()
    peak = [base_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    groups, stats = semantic_groups(x, eps)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    exact = {}
    if check:
        truth, _ = semantic_groups(x, eps, clusters=1)
        exact = {"exact_grouped_rows": len(truth), "same_groups_as_exact": _partition(groups) == _partition(truth)}
    return {
        "rows": rows,
        "eps": eps,
        "clusters": cluster_count(rows),
        "probes": PROBES,
        "seconds": round(seconds, 1),
        "seconds_clustering": round(stats.seconds_clustering, 1),
        "seconds_pairs": round(stats.seconds_pairs, 1),
        "vectors_mb": round(x.nbytes / 2**20),
        "rss_before_mb": round(base_rss),
        "peak_rss_mb": round(peak[0]),
        "grouped_rows": len(groups),
        "pairs": stats.pairs,
        "guest_visits": stats.guest_visits,
        "probe_limited": stats.probe_limited,
        **exact,
        "load_avg_1m": round(os.getloadavg()[0], 1),  # the machine is shared: other jobs slow the figures
        "machine": MACHINE,
    }


def _partition(groups: dict[int, int]) -> set[frozenset[int]]:
    members: dict[int, set[int]] = {}
    for k, g in groups.items():
        members.setdefault(g, set()).add(k)
    return {frozenset(m) for m in members.values()}


SELECT_RECIPE = """
name: semdedup_bench
tasks: [T2I]
rules:
  - {name: semantic_dup, column: image_embedding, dedup: semantic, eps: EPS}
"""


def _build_pool(pool_dir: Path, rows: int, shards: int, seed: int) -> None:
    """A pool of core columns, a 64-byte stand-in image and the synthetic embeddings (not timed)."""
    import pyarrow as pa

    from filters.embedding import ImageEmbeddingScorer
    from flywheel.schema import CORE_COLUMNS, ColumnRegistry
    from flywheel.store.shards import ShardStore

    schema = ColumnRegistry((*CORE_COLUMNS, *ImageEmbeddingScorer.columns)).schema()
    x = synthetic(rows, 1280, seed)
    per = -(-rows // shards)
    for part in range(shards):
        block = x[part * per : (part + 1) * per]
        n = len(block)
        ids = [f"s{part}.{j}" for j in range(n)]
        cols = {
            "id": pa.array(ids),
            "uri": pa.array([f"/src/{i}.jpg" for i in ids]),
            "partition": pa.array(np.full(n, part, np.int32)),
            "task": pa.array(["T2I"] * n),
            "image": pa.array([b"x" * 64] * n, pa.binary()),
            "file_bytes": pa.array(np.full(n, 64, np.int64)),
            "image_embedding": pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), 1280),
        }
        table = pa.table({f.name: cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema})
        ShardStore(pool_dir).write(part, table.cast(schema), f"fp{part}", row_group_size=4096)


def run_select(rows: int, shards: int, eps: float, out: Path, seed: int) -> dict:
    """`flywheel select` with only the semantic rule over a pool of `rows` synthetic embeddings, as a user waits.

    The pool (core columns, a 64-byte stand-in image, the embedding) is built first and not timed; select runs
    in a fresh process and its peak RSS is that child's (RUSAGE_CHILDREN), which includes reading the column.
    """
    import gc

    from flywheel.workspace import Workspace

    ws = Workspace.at(out / f"ws-{rows}")
    if not ws.pool_dir.is_dir():
        _build_pool(ws.pool_dir, rows, shards, seed)
        gc.collect()  # the vectors (zero-copy inside the Arrow tables) are gone before select starts
    recipe = out / "semdedup_bench.yaml"
    recipe.write_text(SELECT_RECIPE.replace("EPS", str(eps)))
    cmd = [sys.executable, "-m", "pipelines.cli", "select", "-w", str(ws.root), "--recipe", str(recipe)]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run([*cmd, "--replace", "--json"], check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    seconds = time.perf_counter() - started
    funnel = json.loads((ws.selection_dir("semdedup_bench") / "funnel.json").read_text())
    rule = funnel["rules"][-1]
    pool_bytes = sum(p.stat().st_size for p in ws.pool_dir.rglob("*.parquet"))
    return {
        "rows": rows,
        "shards": shards,
        "eps": eps,
        "select_s": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "pool_mb": round(pool_bytes / 2**20),
        "removed": rule["removed"],
        "groups": rule["groups"],
        "note": rule["note"],
        "load_avg_1m": round(load, 1),
        "machine": MACHINE,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality", help="precision/recall on labeled near-duplicates (tune eps, report)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", type=Path, default=None, help="write the full result JSON here")
    s = sub.add_parser("scale", help="time and peak memory of the grouping on synthetic 1280-d vectors")
    s.add_argument("--rows", type=int, action="append", required=True)
    s.add_argument("--eps", type=float, default=0.05)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--check", action="store_true", help="also compare with all-pairs (small --rows only)")
    s.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process: one size
    e = sub.add_parser("select", help="`flywheel select` with the semantic rule over a synthetic pool")
    e.add_argument("--rows", type=int, required=True)
    e.add_argument("--shards", type=int, default=10)
    e.add_argument("--eps", type=float, default=0.05)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", type=Path, required=True, help="folder for the pool (kept for re-runs)")
    args = parser.parse_args(argv)
    if args.mode == "select":
        print(json.dumps(run_select(args.rows, args.shards, args.eps, args.out, args.seed)))
        return 0
    if args.mode == "quality":
        result = run_quality(args)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        summary = {k: result["sets"][k]["at_eps"]["all"] for k in ("tune", "report")}
        print(json.dumps({"eps": result["eps"], "eps_margin_rule": result["eps_margin_rule"], **summary}, indent=1))
        return 0
    if args.one:
        print(json.dumps(run_scale_one(args.rows[0], args.eps, args.seed, args.check)))
        return 0
    for rows in args.rows:  # a fresh process per size: its peak RSS is this size's alone
        cmd = [sys.executable, __file__, "scale", "--one", "--rows", str(rows), "--eps", str(args.eps)]
        cmd += ["--check"] if args.check else []
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        print(done.stdout.strip(), flush=True)
    print(json.dumps({"python": platform.python_version(), "machine": MACHINE}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
