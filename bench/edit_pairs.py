"""Edit-pair checks on constructed TI2I pairs of real photos: tune on one set of photos, report on another.

    python3 bench/edit_pairs.py [--crops 6] [--seed 0] [--out docs/edit_pairs.json]

Photos: scikit-image's data photos, scikit-learn's two sample images and the photographic KDE wallpapers
under /usr/share/wallpapers (when present), split into TUNE and REPORT by source photo (no photo in both).
Each photo gives `--crops` random crops (60-100% of its area, 384-640 px shorter side, JPEG q 90: the
source). Per source, one pair of each category (target JPEG q 85-95 unless said otherwise):

- bad: `identical` (the source bytes again), `reencoded` (re-encoded at JPEG q 40-75), `resized` (0.5-0.8x,
  re-encoded), `unrelated` (a crop of another photo of the same split);
- edits by known operations: `recolour` (hue of an ellipse or rectangle covering 5-35% rotated 90-180
  degrees), `add_object` (a filled shape or an elliptical patch of another photo, 3-25% of the area),
  `add_text` (one to three words in Noto Sans Bold from /usr/share/fonts, 8-16% of the height tall),
  `change_background` (everything outside a central ellipse of 25-50% of the area replaced by another
  photo, a gradient or a blurred copy);
- stress categories, outside the headline precision/recall (see STRESS_BAD / STRESS_GOOD): `drift_only`,
  `shifted` (bad) and `global_tone`, `add_object_drift` (edits).

Every pair goes through `EditPairScorer` exactly as in `flywheel score` (target decoded with
`flywheel.imaging.decode` at the scoring view, source decoded by the scorer). Thresholds: each floor/ceiling
is the midpoint between the two classes that maximises F1 of its bad category on the tune set (changed
fraction and SSIM: identical/re-encoded/resized vs edits; outside SSIM: unrelated vs edits); the recipe's
rules then use rounded values, and both are applied unchanged to the report set. The verdicts come from the real
selection engine: the scored pairs are written as a pool and `select` runs `stage2_256p_edit` on it (its
other rules have no columns there and are not applied). A pair is "detected bad" when an edit rule
rejects it.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import sys
import tempfile
import zlib
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine, shrink
from filters.base import SampleBatch
from filters.edit_pair import EditPairScorer
from flywheel.fonts import installed, script_fonts
from flywheel.imaging import SCORING_VIEW, decode
from flywheel.recipes import load_recipe
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import REJECTED, Workspace

WALLPAPERS = Path("/usr/share/wallpapers")
# Photographic KDE wallpapers (the rest are renders or abstract art).
KDE_TUNE = ("BytheWater", "DarkestHour", "FallenLeaf", "ColorfulCups")
KDE_REPORT = ("ColdRipple", "EveningGlow", "Path", "summer_1am")
SK_TUNE = ("astronaut", "coffee", "camera")
SK_REPORT = ("chelsea", "rocket", "motorcycle")
SKL_TUNE = ("china",)
SKL_REPORT = ("flower",)
BAD = ("identical", "reencoded", "resized", "unrelated")
EDITS = ("recolour", "add_object", "add_text", "change_background")
# Stress categories, outside the headline precision/recall: a whole-image edit ("make it warmer and
# brighter", nothing is left unchanged); the drift of a model that regenerates every pixel (blur sigma
# 0.5-0.9, colour gain 0.97-1.03, noise sigma 2, JPEG q80), without an edit (`drift_only`: bad, nothing was
# edited) and after an added object (`add_object_drift`: good); and `shifted`, the source cropped by 1-3% on
# each side and scaled back (bad: the same picture, but no longer pixel-aligned).
STRESS_BAD = ("drift_only", "shifted")
STRESS_GOOD = ("global_tone", "add_object_drift")
BAD_ALL = BAD + STRESS_BAD
CATEGORIES = BAD + EDITS + STRESS_BAD + STRESS_GOOD
WORDS = ("SALE", "OPEN", "hello", "Cafe 24", "NEW", "Flywheel", "2026", "Welcome home", "STOP", "Noto")
EDIT_RULES = ("edit_source_decodes", "edit_changed", "edit_kept_outside", "edit_instruction")


def _shrink(img: Image.Image) -> np.ndarray:
    return shrink(img, 720)


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    arr = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return _shrink(Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8)))


def _sklearn(name: str) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return _shrink(Image.fromarray(load_sample_image(f"{name}.jpg")))


def _wallpaper(name: str) -> np.ndarray | None:
    folder = WALLPAPERS / name / "contents" / "images"
    files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not files:
        return None
    with Image.open(files[0]) as img:
        return _shrink(img)


def photos(split: str) -> dict[str, np.ndarray]:
    sk, skl, kde = (SK_TUNE, SKL_TUNE, KDE_TUNE) if split == "tune" else (SK_REPORT, SKL_REPORT, KDE_REPORT)
    out = {f"sk_{n}": _skimage(n) for n in sk} | {f"skl_{n}": _sklearn(n) for n in skl}
    for name in kde:
        arr = _wallpaper(name)
        if arr is None:
            print(f"wallpaper {name} not found under {WALLPAPERS}: skipped", file=sys.stderr)
            continue
        out[f"kde_{name}"] = arr
    return out


def _jpeg(arr: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    frac = float(rng.uniform(0.6, 1.0))
    ch, cw = max(64, round(h * np.sqrt(frac))), max(64, round(w * np.sqrt(frac)))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = Image.fromarray(rgb[y0 : y0 + ch, x0 : x0 + cw])
    short = int(rng.integers(384, 641))
    scale = short / min(crop.size)
    return np.asarray(crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS))


def _region(h: int, w: int, rng: np.random.Generator, lo: float, hi: float, ellipse: bool) -> Image.Image:
    """A mask (L) of one random ellipse or rectangle covering lo-hi of the image."""
    area = float(rng.uniform(lo, hi)) * h * w * (4 / np.pi if ellipse else 1.0)
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    rw, rh = min(w - 2, round(np.sqrt(area * aspect))), min(h - 2, round(np.sqrt(area / aspect)))
    x0, y0 = int(rng.integers(0, w - rw)), int(rng.integers(0, h - rh))
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    (draw.ellipse if ellipse else draw.rectangle)((x0, y0, x0 + rw, y0 + rh), fill=255)
    return mask


def recolour(src: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    h, w = src.shape[:2]
    mask = np.asarray(_region(h, w, rng, 0.05, 0.35, bool(rng.integers(2)))) > 0
    hsv = np.asarray(Image.fromarray(src).convert("HSV")).copy()
    shift = int(rng.integers(64, 129))  # 90-180 degrees of hue on Pillow's 0-255 scale
    hsv[..., 0] = np.where(mask, (hsv[..., 0].astype(np.int16) + shift) % 256, hsv[..., 0]).astype(np.uint8)
    # Grey regions have no hue to rotate: give them colour so the edit is visible, as a recolour would.
    hsv[..., 1] = np.where(mask, np.maximum(hsv[..., 1], 140), hsv[..., 1])
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def add_object(src: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    h, w = src.shape[:2]
    mask = _region(h, w, rng, 0.03, 0.25, True)
    out = Image.fromarray(src)
    if rng.integers(2):
        r, g, b = colorsys.hsv_to_rgb(float(rng.uniform()), float(rng.uniform(0.5, 1)), float(rng.uniform(0.4, 1)))
        patch = Image.new("RGB", out.size, (round(r * 255), round(g * 255), round(b * 255)))
    else:
        patch = Image.fromarray(other).resize(out.size)
    out.paste(patch, mask=mask)
    return np.asarray(out)


def _bold_font() -> Path:
    """Noto Sans Bold from the shared font catalogue (flywheel.fonts); the bench needs it for `add_text`."""
    found = installed(script_fonts("Latn", ["bold sans-serif"]))
    if not found:
        raise SystemExit("NotoSans-Bold.ttf not installed (Debian fonts-noto-core): add_text pairs need it")
    return found[0][0]


def add_text(src: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    out = Image.fromarray(src)
    h, w = src.shape[:2]
    words = " ".join(str(rng.choice(WORDS)) for _ in range(int(rng.integers(1, 4))))
    size = int(h * rng.uniform(0.08, 0.16))
    path = _bold_font()
    font = ImageFont.truetype(str(path), size)
    draw = ImageDraw.Draw(out)
    while draw.textlength(words, font=font) > w * 0.95 and size > 10:
        size = int(size * 0.9)
        font = ImageFont.truetype(str(path), size)
    tw = int(draw.textlength(words, font=font))
    x, y = int(rng.integers(0, max(1, w - tw))), int(rng.integers(0, max(1, h - size * 1.3)))
    mean = src.reshape(-1, 3).mean(axis=0)
    fill = (255, 255, 255) if mean.mean() < 128 else (20, 20, 20)
    r, g, b = colorsys.hsv_to_rgb(float(rng.uniform()), 1.0, 1.0)
    if rng.integers(2):
        fill = (round(r * 255), round(g * 255), round(b * 255))
    draw.text((x, y), words, font=font, fill=fill)
    return np.asarray(out)


def change_background(src: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    h, w = src.shape[:2]
    area = float(rng.uniform(0.25, 0.5)) * h * w * 4 / np.pi
    aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    rw, rh = min(w - 2, round(np.sqrt(area * aspect))), min(h - 2, round(np.sqrt(area / aspect)))
    cx, cy = w // 2 + int(rng.integers(-w // 8, w // 8 + 1)), h // 2 + int(rng.integers(-h // 8, h // 8 + 1))
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse((cx - rw // 2, cy - rh // 2, cx + rw // 2, cy + rh // 2), fill=255)
    kind = int(rng.integers(3))
    if kind == 0:
        background = Image.fromarray(other).resize((w, h))
    elif kind == 1:
        top = np.array(colorsys.hsv_to_rgb(float(rng.uniform()), 0.6, 0.9)) * 255
        bottom = np.array(colorsys.hsv_to_rgb(float(rng.uniform()), 0.6, 0.5)) * 255
        ramp = np.linspace(0, 1, h)[:, None, None]
        background = Image.fromarray(np.broadcast_to(top * (1 - ramp) + bottom * ramp, (h, w, 3)).astype(np.uint8))
    else:
        background = Image.fromarray(src).filter(ImageFilter.GaussianBlur(12))
    background.paste(Image.fromarray(src), mask=mask)
    return np.asarray(background)


def global_tone(src: np.ndarray, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    gain = np.array([rng.uniform(1.1, 1.35), rng.uniform(1.0, 1.2), rng.uniform(0.7, 0.9)], dtype=np.float32)
    return np.clip(src.astype(np.float32) * gain + float(rng.uniform(10, 30)), 0, 255).astype(np.uint8)


def drift(src: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = Image.fromarray(src).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 0.9))))
    x = np.asarray(img, dtype=np.float32) * rng.uniform(0.97, 1.03, size=3).astype(np.float32)
    x += rng.normal(0, 2.0, x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def shifted(src: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = src.shape[:2]
    t, b, left, r = (int(rng.uniform(0.01, 0.03) * n) for n in (h, h, w, w))
    crop = Image.fromarray(src[t : h - b, left : w - r])
    return np.asarray(crop.resize((w, h), Image.Resampling.LANCZOS))


OPERATIONS: dict[str, Callable[[np.ndarray, np.random.Generator, np.ndarray], np.ndarray]] = {
    "recolour": recolour,
    "add_object": add_object,
    "add_text": add_text,
    "change_background": change_background,
    "global_tone": global_tone,
}


def build_pairs(split: str, crops: int, seed: int) -> list[tuple[str, str, bytes, bytes]]:
    """(category, photo, target bytes, source bytes) for every source crop of the split's photos."""
    pool = photos(split)
    names = sorted(pool)
    pairs: list[tuple[str, str, bytes, bytes]] = []
    for name in names:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        others = [n for n in names if n != name]
        for _ in range(crops):
            src = _crop(pool[name], rng)
            src_bytes = _jpeg(src, 90)
            other = _crop(pool[str(rng.choice(others))], rng)
            pairs.append(("identical", name, src_bytes, src_bytes))
            pairs.append(("reencoded", name, _jpeg(src, int(rng.integers(40, 76))), src_bytes))
            scale = float(rng.uniform(0.5, 0.8))
            small = Image.fromarray(src).resize((round(src.shape[1] * scale), round(src.shape[0] * scale)))
            pairs.append(("resized", name, _jpeg(np.asarray(small), int(rng.integers(75, 96))), src_bytes))
            pairs.append(("unrelated", name, _jpeg(other, int(rng.integers(85, 96))), src_bytes))
            for category, op in OPERATIONS.items():
                pairs.append((category, name, _jpeg(op(src, rng, other), int(rng.integers(85, 96))), src_bytes))
            pairs.append(("drift_only", name, _jpeg(drift(src, rng), 80), src_bytes))
            pairs.append(("add_object_drift", name, _jpeg(drift(add_object(src, rng, other), rng), 80), src_bytes))
            pairs.append(("shifted", name, _jpeg(shifted(src, rng), int(rng.integers(85, 96))), src_bytes))
    return pairs


def score_pairs(pairs: list[tuple[str, str, bytes, bytes]], instruction: str) -> tuple[list[dict[str, object]], float]:
    """Scored rows, and the scorer's milliseconds per pair (source decode included, target decode not)."""
    scorer = EditPairScorer()
    batch = SampleBatch(
        ids=[str(i) for i in range(len(pairs))],
        images=[p[2] for p in pairs],
        captions=[instruction] * len(pairs),
        decoded=[decode(p[2], SCORING_VIEW) for p in pairs],
        tasks=["TI2I"] * len(pairs),
        source_images=[p[3] for p in pairs],
        view_short_side=SCORING_VIEW,
    )
    out = scorer(batch)
    rows = [
        {"category": c, "photo": n, "instruction": instruction, **{k: list(v)[i] for k, v in out.items()}}
        for i, (c, n, _, _) in enumerate(pairs)
    ]
    return rows, 1000 * scorer.counters.seconds / max(1, len(pairs))


def best_threshold(bad: list[float], good: list[float], bad_is_high: bool) -> tuple[float, float]:
    """Midpoint threshold maximising F1 of flagging `bad` (flag: value > t if bad_is_high else value < t)."""
    values = sorted(set(bad) | set(good))
    best = (0.0, values[0])
    for lo, hi in pairwise(values):
        t = (lo + hi) / 2
        flag_bad = [(v > t) == bad_is_high for v in bad]
        flag_good = [(v > t) == bad_is_high for v in good]
        tp, fp = sum(flag_bad), sum(flag_good)
        f1 = 2 * tp / (2 * tp + fp + (len(bad) - tp)) if tp else 0.0
        if f1 > best[0]:
            best = (f1, t)
    return best[1], best[0]


def rule_verdicts(rows: list[dict[str, object]]) -> tuple[list[str | None], dict[str, str]]:
    """Run `flywheel select --recipe stage2_256p_edit` (the real engine) over the scored pairs.

    The pool holds the core columns the engine needs plus the edit columns only, so every other rule of the
    recipe is "not applied" and the verdicts are the edit rules' alone. Returns the rejecting rule per row
    (None: kept) and each edit rule's condition as the engine describes it.
    """
    recipe = load_recipe("stage2_256p_edit")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.at(Path(tmp) / "ws")
        n = len(rows)
        table = pa.table(
            {
                "id": pa.array([f"pair{i}" for i in range(n)], pa.string()),
                "uri": pa.array([f"{r['category']}/{r['photo']}/{i}" for i, r in enumerate(rows)], pa.string()),
                "partition": pa.array([0] * n, pa.int32()),
                "task": pa.array(["TI2I"] * n, pa.string()),
                "caption": pa.array([r["instruction"] for r in rows], pa.string()),
                **{c.name: pa.array([r[c.name] for r in rows], c.dtype) for c in EditPairScorer.columns},
            }
        )
        ShardStore(ws.pool_dir).write(0, table, "bench")
        sel = select(ws, recipe)
        not_applied = {str(x["rule"]) for x in sel.funnel.not_applied}
        missing = sorted(set(EDIT_RULES) & not_applied)
        if missing:
            raise RuntimeError(f"edit rules {missing} were not applied: {sel.funnel.not_applied}")
        rejected = pq.read_table(sel.meta_dir / REJECTED).to_pylist()
    by_id = {str(r["id"]): str(r["reason"]) for r in rejected}
    return [by_id.get(f"pair{i}") for i in range(len(rows))], {r: recipe.rule(r).describe() for r in EDIT_RULES}


def summarise(rows: list[dict[str, object]], verdicts: list[str | None]) -> dict[str, object]:
    per: dict[str, dict[str, object]] = {}
    for category in CATEGORIES:
        idx = [i for i, r in enumerate(rows) if r["category"] == category]
        kept = sum(1 for i in idx if verdicts[i] is None)
        reasons: dict[str, int] = {}
        for i in idx:
            if verdicts[i]:
                reasons[str(verdicts[i])] = reasons.get(str(verdicts[i]), 0) + 1
        stats = {}
        for col in ("edit_ssim", "edit_changed_fraction", "edit_outside_ssim"):
            vals = np.array([float(rows[i][col]) for i in idx])  # type: ignore[arg-type]
            stats[col] = [round(float(vals.min()), 4), round(float(np.median(vals)), 4), round(float(vals.max()), 4)]
        per[category] = {
            "n": len(idx),
            "kept": kept,
            "kept_fraction": round(kept / len(idx), 3),
            "rejected_by": reasons,
        }
        per[category]["min_median_max"] = stats
    return {
        "categories": per,
        "bad_pair_detection": _precision_recall(rows, verdicts, BAD + EDITS),
        "bad_pair_detection_with_stress": _precision_recall(rows, verdicts, CATEGORIES),
        "pairs": len(rows),
    }


def _precision_recall(rows: list[dict[str, object]], verdicts: list[str | None], within: tuple[str, ...]) -> dict:
    """Precision/recall of "bad pair" (identical, re-encoded, resized, unrelated; drift_only and shifted among
    the stress categories) = rejected by an edit rule."""
    idx = [i for i, r in enumerate(rows) if r["category"] in within]
    bad = {i for i in idx if rows[i]["category"] in BAD_ALL}
    flagged = {i for i in idx if verdicts[i] is not None}
    tp, fp, fn = len(bad & flagged), len(flagged - bad), len(bad - flagged)
    return {
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, default=6, help="source crops per photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    instruction = "make the requested edit"  # valid, so only the pixel rules judge these pairs
    timed = {s: score_pairs(build_pairs(s, args.crops, args.seed), instruction) for s in ("tune", "report")}
    scored = {s: rows for s, (rows, _) in timed.items()}
    tune = scored["tune"]
    fitted = {}
    same = [r for r in tune if r["category"] in ("identical", "reencoded", "resized")]
    edits = [r for r in tune if r["category"] in EDITS]
    unrelated = [r for r in tune if r["category"] == "unrelated"]
    for col, bad_rows, bad_is_high in (
        ("edit_changed_fraction", same, False),
        ("edit_ssim", same, True),
        ("edit_outside_ssim", unrelated, False),
    ):
        t, f1 = best_threshold(
            [float(r[col]) for r in bad_rows],  # type: ignore[arg-type]
            [float(r[col]) for r in edits],  # type: ignore[arg-type]
            bad_is_high,
        )
        fitted[col] = {"tuned_threshold": round(t, 4), "tune_f1": round(f1, 3)}
    result: dict[str, object] = {
        "command": "python3 bench/edit_pairs.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "photos": {s: sorted({str(r["photo"]) for r in rows}) for s, rows in scored.items()},
        "tuned_on_tune_set": fitted,
    }
    for split, rows in scored.items():
        verdicts, rules = rule_verdicts(rows)
        result["recipe_rules"] = rules
        result[split] = summarise(rows, verdicts)
        result[split]["scorer_ms_per_pair"] = round(timed[split][1], 2)  # type: ignore[index]
    emit(result, args.out)


if __name__ == "__main__":
    main()
