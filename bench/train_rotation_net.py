"""Train and evaluate the CNN rotation detector of `filters/rotation_net.py` (EfficientNet-Lite0 features).

Why: the sky-prior detector of `filters/rotation.py` sees only one cue and measured 0.5 four-way accuracy.
Pretrained ImageNet features carry far more orientation evidence (faces, horizons, gravity, text lines), so a
linear "uprightness" score on frozen EfficientNet-Lite0 features, shared by the four candidate rotations of an
image (a conditional logit, as in the sky model), should generalise from few photos. Few photos can be had
offline, so evaluation is leave-one-group-out: crops of a photo (and of its stereo twin) and text renders of a
script are never on both sides.

Data: the photos of `bench/train_rotation.py` (scikit-image, scikit-learn, and with `--deb-root` the curated
Debian sample photos and wallpapers) plus text images rendered with Noto fonts in several scripts (the demo's
renderer), so text lines count as an orientation cue and text images are not flagged as rotated.

    apt-get download opencv-doc plasma-workspace-wallpapers mate-backgrounds
    mkdir -p /tmp/rotation-debs && for f in *.deb; do dpkg -x "$f" /tmp/rotation-debs; done
    python bench/train_rotation_net.py --deb-root /tmp/rotation-debs --report /tmp/rotation_net_cv.json

Writes the head (standardisation + weights) to `filters/data/rotation_net_head.safetensors` with provenance in
its metadata. Deterministic (fixed seeds, L-BFGS from zeros).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_rotation import (
    DEBIAN_PHOTOS,
    Photo,
    debian_photos,
    fit,
    metrics,
    predict,
    random_crops,
    skimage_photos,
    sklearn_photos,
)

from filters.rotation_net import DEFAULT_HEAD, VIEW, RotationNetScorer, candidate_order, save_head
from flywheel.imaging import decode, encode_jpeg


def text_photos(n_per_script: int, seed: int) -> list[Photo]:
    """Rendered text images, one group per script; they train the model that text lines are an up cue."""
    from corpus.text import render_text_image, usable_scripts

    scripts, _ = usable_scripts()
    rng = np.random.default_rng(seed)
    words = ["open daily", "fresh bread", "city museum", "exit", "welcome home", "summer sale 50%", "2024 report"]
    out = []
    for spec in scripts:
        for i in range(n_per_script):
            phrase = spec.phrases[i % len(spec.phrases)] if getattr(spec, "phrases", None) else words[i % len(words)]
            img = render_text_image(rng, spec, phrase, max_side=640).image
            out.append(Photo(f"text_{spec.code}", f"{spec.code}_{i}", np.asarray(img.convert("RGB"))))
    return out


def view_features(scorer: RotationNetScorer, views: list[np.ndarray]) -> np.ndarray:
    """(n, 4, d): features of each view rotated clockwise by 0/90/180/270 (4 forward passes per view)."""
    prepared = []
    for view in views:
        decoded = decode(encode_jpeg(view, quality=92), view_short_side=VIEW)
        prepared.append(scorer.prepare(decoded))
    return scorer.rotated_features(np.stack(prepared))


def candidates(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every view shown in all four rotations: candidate features (n*4, 4, d) and labels (the shown rotation)."""
    xs, ys = [], []
    for r in range(4):
        xs.append(g[:, candidate_order(r)])
        ys.append(np.full(len(g), r))
    return np.concatenate(xs), np.concatenate(ys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deb-root", type=Path, default=None, help="root where the Debian packages were extracted")
    ap.add_argument("--crops", type=int, default=12, help="random crops per photo")
    ap.add_argument("--text-per-script", type=int, default=6)
    ap.add_argument("--l2", type=float, default=5.0, help="L2 penalty on standardised weights")
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--out", type=Path, default=DEFAULT_HEAD)
    ap.add_argument("--report", type=Path, default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(0)

    photos = skimage_photos() + sklearn_photos() + debian_photos(args.deb_root, DEBIAN_PHOTOS)
    texts = text_photos(args.text_per_script, args.seed)
    items = photos + texts
    scorer = RotationNetScorer(head_path=None)
    scorer.load_backbone()
    feats, groups = [], []
    for item in items:
        views = random_crops(item, args.crops, args.seed) if not item.group.startswith("text_") else [item.rgb]
        feats.append(view_features(scorer, views))
        groups += [item.group] * len(views)
    g = np.concatenate(feats)
    grp = np.asarray(groups)
    print(
        f"{len(photos)} photos, {len(texts)} text renders -> {len(g)} views, features in "
        f"{time.perf_counter() - started:.0f}s",
        flush=True,
    )

    x, y = candidates(g)
    gx = np.tile(grp, 4)
    names = sorted(set(grp))
    prob = np.zeros((len(y), 4))
    for name in names:
        test = gx == name
        mean, scale, w = fit(x[~test], y[~test], args.l2)
        prob[test] = predict(x[test], mean, scale, w)
    is_text = np.char.startswith(gx.astype(str), "text_")
    report = {
        "cv": "leave-one-group-out (photo or stereo pair; text renders of one script)",
        "views": len(g),
        "photos": len(photos),
        "text_renders": len(texts),
        "groups": len(names),
        "photos_only": metrics(prob[~is_text], y[~is_text]),
        "text_only": metrics(prob[is_text], y[is_text]) if is_text.any() else {},
        "per_angle_acc_photos": {
            str(90 * r): float((prob[~is_text & (y == r)].argmax(1) == r).mean()) for r in range(4)
        },
        "l2": args.l2,
        "crops": args.crops,
        "seed": args.seed,
        "view": VIEW,
    }
    print(json.dumps({k: v for k, v in report.items()}, indent=1, default=float))
    if args.report:
        args.report.write_text(json.dumps(report, indent=2, default=float))
    if not args.no_write:
        mean, scale, w = fit(x, y, args.l2)
        save_head(
            args.out,
            mean,
            scale,
            w,
            {
                "trained": dt.date.today().isoformat(),
                "backbone": "efficientnet-lite0 (ImageNet, frozen)",
                "data": f"{len(photos)} photos x {args.crops} crops, {len(texts)} text renders, 4 rotations each",
                "cv_photos_acc4": f"{report['photos_only']['acc4']:.3f}",
                "cv_text_acc4": f"{report['text_only'].get('acc4', float('nan')):.3f}",
                "command": "python bench/train_rotation_net.py " + " ".join(argv or sys.argv[1:]),
            },
        )
        print(f"wrote {args.out}")
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
