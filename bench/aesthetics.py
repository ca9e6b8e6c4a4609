"""Train the shipped aesthetic head and measure it on held-out constructed pairs.

Data: the photos of `bench/train_rotation.py` (scikit-image and scikit-learn sample photos, and with
`--deb-root` the curated Debian sample photos and wallpapers; see that file for the `apt-get download`
lines). Photos are split by group (one scene, stereo pairs together) into a training and a held-out set by a
hash of the group name, so no held-out pair shares a source image with training. Each photo gives
`--views` clean views and each view one degraded copy per degradation (`flywheel.aesthetics.degrade`): the
pair (clean, degraded) says the clean one is preferred. Embeddings: EfficientNet-Lite0 pooled, 224 px,
L2-normalised (the shared `embedding` filter's features).

Reported: held-out pairwise accuracy per degradation for the shipped MLP head and a linear head, and
leave-one-degradation-out accuracy (trained without that degradation at all: does the head recognise damage
it was never shown?). The shipped head is the one fitted on the training groups only, so the held-out figures
describe exactly the file in filters/data.

    python bench/aesthetics.py --deb-root /tmp/rotation-debs --report /tmp/aesthetics_report.json

Deterministic (seeded views, seeded full-batch AdamW on one thread).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_rotation import DEBIAN_PHOTOS, debian_photos, skimage_photos, sklearn_photos
from filters.aesthetics import DEFAULT_HEAD
from flywheel.aesthetics.degrade import DEGRADATIONS, build_pairs
from flywheel.aesthetics.embed import LiteEmbedder
from flywheel.aesthetics.head import save_head
from flywheel.aesthetics.train import FitConfig, fit_head, pairwise_accuracy


def held_out(group: str, fold: int = 4) -> bool:
    """About one group in `fold` is held out, chosen by a hash of its name (stable as photos are added)."""
    return zlib.crc32(group.encode()) % fold == 0


def per_kind(scores: np.ndarray, good: np.ndarray, bad: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    out = {k: round(pairwise_accuracy(scores, good[kinds == k], bad[kinds == k]), 4) for k in DEGRADATIONS}
    out["all"] = round(pairwise_accuracy(scores, good, bad), 4)
    return out


def brisque_baseline(views: list[np.ndarray], good: np.ndarray, bad: np.ndarray, kinds: np.ndarray) -> dict:
    """The same held-out pairs ordered by BRISQUE (lower is better) of the 256 px view: a no-training reference."""
    from filters.image_quality import at_scale, brisque_score

    cache: dict[int, float] = {}

    def q(i: int) -> float:
        if i not in cache:
            v = brisque_score(at_scale(views[i]))
            cache[i] = float("inf") if v is None else v
        return cache[i]

    neg = np.zeros(len(views))
    for i in set(good.tolist()) | set(bad.tolist()):
        neg[i] = -q(i)
    return per_kind(neg, good, bad, kinds)


def zoom_controls(views: list[np.ndarray], x: np.ndarray, head: object, clean: np.ndarray, seed: int) -> dict:
    """P(score(clean) > score(central zoom of it)): no framing or tilt error, only the upscaling softness that
    bad_crop (strong zoom) and tilt (mild zoom) also carry. High values mean part of what those two pairs
    measure is softness, not composition."""
    from PIL import Image

    from flywheel.aesthetics.degrade import _resize_short, finish

    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for name, lo, hi in (("zoom_mild_75_90pct", 0.75, 0.9), ("zoom_strong_30_45pct", 0.30, 0.45)):
        zoomed = []
        for i in clean.tolist():
            img = Image.fromarray(views[i])
            f = float(rng.uniform(lo, hi))
            w, h = img.size
            cw, ch = max(8, round(w * f)), max(8, round(h * f))
            left, top = (w - cw) // 2, (h - ch) // 2
            zoomed.append(finish(_resize_short(img.crop((left, top, left + cw, top + ch)), min(w, h))))
        s_zoom = head(LiteEmbedder().embed(zoomed))  # type: ignore[operator]
        s_clean = head(x[clean])  # type: ignore[operator]
        out[name] = round(float((s_clean > s_zoom).mean()), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deb-root", type=Path, default=None, help="root where the Debian packages were extracted")
    ap.add_argument("--views", type=int, default=4, help="clean views per photo")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--out", type=Path, default=DEFAULT_HEAD)
    ap.add_argument("--report", type=Path, default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    photos = skimage_photos() + sklearn_photos() + debian_photos(args.deb_root, DEBIAN_PHOTOS)
    pairs = build_pairs([(p.group, p.rgb) for p in photos], args.views, args.seed)
    x = LiteEmbedder().embed(pairs.views)
    src = np.asarray(pairs.source)
    kinds = np.asarray(pairs.kind)
    test_view = np.array([held_out(g) for g in src])
    test_pair = test_view[pairs.good]
    groups = sorted(set(src))
    n_test = sum(held_out(g) for g in groups)
    print(
        f"{len(photos)} photos in {len(groups)} groups ({n_test} held out), {len(x)} views, {len(pairs.good)} pairs; "
        f"embedded in {time.perf_counter() - started:.0f}s",
        flush=True,
    )
    clean = np.setdiff1d(np.arange(len(x)), pairs.bad)
    g_tr, b_tr = pairs.good[~test_pair], pairs.bad[~test_pair]
    g_te, b_te, k_te = pairs.good[test_pair], pairs.bad[test_pair], kinds[test_pair]
    anchor = clean[~test_view[clean]]

    def fit(good: np.ndarray, bad: np.ndarray, hidden: int) -> object:
        cfg = FitConfig(hidden=hidden, steps=args.steps, seed=args.seed)
        return fit_head(x, good, bad, anchor=anchor, cfg=cfg)

    mlp = fit(g_tr, b_tr, args.hidden)
    linear = fit(g_tr, b_tr, 0)
    report: dict[str, object] = {
        "split": "by photo group, crc32(group) % 4 == 0 held out",
        "photos": len(photos),
        "groups": len(groups),
        "held_out_groups": n_test,
        "views": len(x),
        "pairs_train": len(g_tr),
        "pairs_held_out": len(g_te),
        "held_out_accuracy_mlp": per_kind(mlp(x), g_te, b_te, k_te),  # type: ignore[operator]
        "held_out_accuracy_linear": per_kind(linear(x), g_te, b_te, k_te),  # type: ignore[operator]
        "train_accuracy_mlp": round(pairwise_accuracy(mlp(x), g_tr, b_tr), 4),  # type: ignore[operator]
    }
    lodo: dict[str, float] = {}
    for name in DEGRADATIONS:
        keep = kinds[~test_pair] != name
        head = fit(g_tr[keep], b_tr[keep], args.hidden)
        sel = k_te == name
        lodo[name] = round(pairwise_accuracy(head(x), g_te[sel], b_te[sel]), 4)  # type: ignore[operator]
    report["leave_one_degradation_out_mlp"] = lodo
    report["brisque_baseline_held_out"] = brisque_baseline(pairs.views, g_te, b_te, k_te)
    report["zoom_controls_held_out"] = zoom_controls(pairs.views, x, mlp, clean[test_view[clean]], args.seed)
    # Scale facts: where clean and degraded held-out views fall on the shipped head's scale.
    s = mlp(x)  # type: ignore[operator]
    report["held_out_score_clean_mean"] = round(float(s[clean[test_view[clean]]].mean()), 3)
    report["held_out_score_degraded_mean"] = {k: round(float(s[b_te[k_te == k]].mean()), 3) for k in DEGRADATIONS}
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_write:
        meta = {
            "trained": dt.date.today().isoformat(),
            "command": "python bench/aesthetics.py" + (" --deb-root DEB_ROOT" if args.deb_root else ""),
            "data": f"{len(photos)} photos / {len(groups) - n_test} training groups; constructed pairs "
            f"({', '.join(DEGRADATIONS)})",
            "held_out_accuracy": json.dumps(report["held_out_accuracy_mlp"]),
        }
        mlp.meta.update(meta)  # type: ignore[attr-defined]
        save_head(args.out, mlp)  # type: ignore[arg-type]
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
