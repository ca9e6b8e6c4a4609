"""Train and evaluate the content-based rotation detector of `filters/rotation.py`.

Why this data: the detector must learn what "upright" looks like in ordinary photos, and no photo
data set can be downloaded here. So the photos come from packages that ship them: scikit-image's
sample photos (always present: a runtime dependency), scikit-learn's two sample photos (if
installed), and, when `--deb-root` points at extracted Debian packages, the sample photos of
`opencv-doc` and the photo wallpapers of `plasma-workspace-wallpapers` and `mate-backgrounds`
(curated list below; abstract art, microscopy, astronomy, top-down and text images are left out
because they have no upright). Fetch them without installing (about 240 MB of .deb files)::

    apt-get download opencv-doc plasma-workspace-wallpapers mate-backgrounds
    mkdir -p /tmp/rotation-debs && for f in *.deb; do dpkg -x "$f" /tmp/rotation-debs; done

Each photo yields random crops (aspect 1:2..2:1, 20-100% of the area, plus the whole photo) that go
through the real JPEG encode/decode path at 256 px and are shown in all four rotations (pixels
really rotated, features recomputed). Evaluation is leave-one-photo-out: crops of a photo (and of
its stereo twin, which shares its group) are never on both sides. The final model is fitted on all
photos and written to `filters/data/rotation_weights.json` with provenance and the CV figures.

    python bench/train_rotation.py --deb-root /tmp/rotation-debs --report /tmp/rotation_cv.json

Deterministic (fixed seeds, crops derived from the photo name, L-BFGS from zeros); about 30 s on
2 cores. Needs numpy, scipy and Pillow only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import shrink
from filters.rotation import ANGLES, DEFAULT_WEIGHTS, FEATURE_VERSION, base_maps, candidate_features
from flywheel.imaging import decode, encode_jpeg

WORK_SHORT_SIDE = 640  # photos are shrunk to this before cropping (crops end at 256 px anyway)
VIEW = 256

# group -> paths relative to --deb-root; one group per scene (stereo pairs and near-duplicates share one).
_CV = "usr/share/doc/opencv-doc/examples"
_KDE = "usr/share/wallpapers"
_MATE = "usr/share/backgrounds/mate/nature"
DEBIAN_PHOTOS: dict[str, tuple[str, ...]] = {
    "cv_aero": (f"{_CV}/data/aero1.jpg", f"{_CV}/data/aero3.jpg"),
    "cv_aloe": (f"{_CV}/data/aloeL.jpg", f"{_CV}/data/aloeR.jpg"),
    "cv_apple": (f"{_CV}/data/apple.jpg",),
    "cv_baboon": (f"{_CV}/data/baboon.jpg",),
    "cv_basketball": (f"{_CV}/data/basketball1.png", f"{_CV}/data/basketball2.png"),
    "cv_box_in_scene": (f"{_CV}/data/box_in_scene.png",),
    "cv_building": (f"{_CV}/data/building.jpg",),
    "cv_butterfly": (f"{_CV}/data/butterfly.jpg",),
    "cv_dog": (f"{_CV}/data/chicky_512.png",),
    "cv_palace": (f"{_CV}/data/home.jpg",),
    "cv_books": (f"{_CV}/data/left.jpg", f"{_CV}/data/right.jpg"),
    "cv_leuven": (f"{_CV}/data/leuvenA.jpg", f"{_CV}/data/leuvenB.jpg"),
    "cv_car": (f"{_CV}/data/licenseplate_motion.jpg",),
    "cv_football": (f"{_CV}/data/messi5.jpg",),
    "cv_rubberwhale": (f"{_CV}/data/rubberwhale1.png", f"{_CV}/data/rubberwhale2.png"),
    "cv_squirrel": (f"{_CV}/data/squirrel_cls.jpg",),
    "cv_starry_night": (f"{_CV}/data/starry_night.jpg",),
    "cv_plant": (f"{_CV}/alphamat/input_images/plant.jpg",),
    "cv_house": (f"{_CV}/reg/home.png",),
    "cv_anime": (f"{_CV}/fuzzy/input.png",),
    "cv_bird": (f"{_CV}/hfs/data/000.jpg",),
    "cv_lake": (f"{_CV}/hfs/data/001.jpg",),
    "cv_tree": (f"{_CV}/hfs/data/002.jpg",),
    **{f"cv_street{i}": (f"{_CV}/text/scenetext0{i}.jpg",) for i in range(1, 7)},
    "kde_autumn_painting": (f"{_KDE}/Autumn/contents/images/1920x1080.jpg",),
    "kde_pier": (f"{_KDE}/BytheWater/contents/images/1920x1080.jpg",),
    "kde_fog_pier": (f"{_KDE}/ColdRipple/contents/images/1920x1080.jpg",),
    "kde_mist_lake": (f"{_KDE}/DarkestHour/contents/images/1920x1080.jpg",),
    "kde_boats": (f"{_KDE}/EveningGlow/contents/images/1920x1080.jpg",),
    "kde_leaf": (f"{_KDE}/FallenLeaf/contents/images/1920x1080.jpg",),
    "kde_forest_path": (f"{_KDE}/Path/contents/images/1920x1080.jpg",),
    "kde_rocket_illustration": (f"{_KDE}/SafeLanding/contents/images/1622x2880.jpg",),
    "kde_dusk_lake": (f"{_KDE}/summer_1am/contents/images/1920x1080.jpg",),
    "mate_drop": (f"{_MATE}/Aqua.jpg",),
    "mate_dune": (f"{_MATE}/Dune.jpg",),
    "mate_garden": (f"{_MATE}/Garden.jpg",),
    "mate_meadow": (f"{_MATE}/GreenMeadow.jpg",),
    "mate_ladybird": (f"{_MATE}/LadyBird.jpg",),
    "mate_storm": (f"{_MATE}/Storm.jpg",),
    "mate_dandelion": (f"{_MATE}/TwoWings.jpg",),
    "mate_flower": (f"{_MATE}/YellowFlower.jpg",),
}

# Evaluated only (not trained on): mostly-text images, where the photo cues do not apply.
DEBIAN_TEXT: dict[str, tuple[str, ...]] = {
    "text_paragraph": (f"{_CV}/data/imageTextN.png",),
    "text_music": (f"{_CV}/data/notes.png",),
}


@dataclass
class Photo:
    group: str
    name: str
    rgb: np.ndarray


def _shrink(img: Image.Image) -> np.ndarray:
    return shrink(img, WORK_SHORT_SIDE)


def _from_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return _shrink(Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8)))


def skimage_photos() -> list[Photo]:
    """Natural photos shipped in scikit-image's wheel (no download); the rest are not photos or have no up."""
    from skimage import data

    loaders: dict[str, Callable[[], np.ndarray]] = {
        "astronaut": data.astronaut,
        "coffee": data.coffee,
        "chelsea": data.chelsea,
        "rocket": data.rocket,
        "camera": data.camera,
    }
    photos = [Photo(f"sk_{k}", k, _from_array(f())) for k, f in loaders.items()]
    left, right, _ = data.stereo_motorcycle()
    photos += [
        Photo("sk_motorcycle", "motorcycle_left", _from_array(left)),
        Photo("sk_motorcycle", "motorcycle_right", _from_array(right)),
    ]
    return photos


def skimage_text() -> list[Photo]:
    from skimage import data

    return [
        Photo("text_page", "page", _from_array(data.page())),
        Photo("text_handwriting", "text", _from_array(data.text())),
    ]


def sklearn_photos() -> list[Photo]:
    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        print("scikit-learn not installed: skipping china.jpg and flower.jpg", file=sys.stderr)
        return []
    return [Photo(f"skl_{n}", n, _from_array(load_sample_image(f"{n}.jpg"))) for n in ("china", "flower")]


def debian_photos(root: Path | None, table: dict[str, tuple[str, ...]]) -> list[Photo]:
    if root is None:
        return []
    photos: list[Photo] = []
    missing = []
    for group, paths in table.items():
        for rel in paths:
            path = root / rel
            if not path.exists():
                missing.append(rel)
                continue
            with Image.open(path) as img:
                photos.append(Photo(group, rel, _shrink(img)))
    if missing:
        print(f"{len(missing)} curated Debian photos missing under {root}, e.g. {missing[:3]}", file=sys.stderr)
    return photos


def random_crops(photo: Photo, n: int, seed: int) -> list[np.ndarray]:
    """`n` crops with aspect 1:2..2:1 (log-uniform) and 20-100% of the photo area, as decoded 256 px views."""
    rng = np.random.default_rng([seed, zlib.crc32(photo.name.encode())])
    h, w = photo.rgb.shape[:2]
    views = []
    for i in range(n):
        if i == 0:
            y0, x0, ch, cw = 0, 0, h, w  # the whole photo is always one sample
        else:
            aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
            area = float(rng.uniform(0.2, 1.0)) * h * w
            cw = min(w, round(np.sqrt(area * aspect)))
            ch = min(h, round(np.sqrt(area / aspect)))
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(photo.rgb[y0 : y0 + ch, x0 : x0 + cw])
        decoded = decode(encode_jpeg(np.asarray(crop), quality=int(rng.integers(70, 95))), view_short_side=VIEW)
        if not decoded.ok:
            raise RuntimeError(f"crop {i} of {photo.name} did not decode: {decoded.broken_detail}")
        views.append(decoded.rgb)
    return views


def featurize(views: list[np.ndarray]) -> np.ndarray:
    """(n_views * 4, 4, n_features): each view shown rotated clockwise by 0/90/180/270, label = that index."""
    out = []
    for view in views:
        for r in range(4):
            shown = np.rot90(view, -r)  # clockwise by 90 * r
            out.append(candidate_features(base_maps(np.ascontiguousarray(shown))))
    return np.stack(out)


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conditional logit: one weight vector scores all four candidates; softmax picks the upright one."""
    flat = x.reshape(-1, x.shape[-1])
    mean = flat.mean(axis=0)
    scale = flat.std(axis=0) + 1e-6
    z = (x - mean) / scale
    n = len(y)
    rows = np.arange(n)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = z @ w
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        nll = -np.log(p[rows, y] + 1e-12).mean()
        resid = p.copy()
        resid[rows, y] -= 1.0
        grad = np.einsum("nk,nkd->d", resid, z) / n
        return float(nll + 0.5 * l2 * w @ w), grad + l2 * w

    res = minimize(loss, np.zeros(x.shape[-1]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return mean, scale, res.x


def predict(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, w: np.ndarray) -> np.ndarray:
    s = ((x - mean) / scale) @ w
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(axis=1, keepdims=True)


def metrics(prob: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """4-way accuracy, and upright-vs-rotated with 'rotated' as the positive (what the filter rejects).

    The prediction is the argmax with ties going to 0, exactly as the scorer does, so an image
    without cues counts as right when it is upright and wrong when it is rotated.
    """
    pred = prob.argmax(axis=1)
    flagged, rotated = pred != 0, y != 0
    tp = int((flagged & rotated).sum())
    upright_p = prob[:, 0]
    confident = prob.max(axis=1) >= 0.5
    out = {
        "n": len(y),
        "acc4": float((pred == y).mean()),
        "rotated_precision": tp / max(1, int(flagged.sum())),
        "rotated_recall": tp / max(1, int(rotated.sum())),
        "upright_kept": float((~flagged & ~rotated).sum() / max(1, int((~rotated).sum()))),
        "confident_share": float(confident.mean()),
        "confident_acc4": float((pred == y)[confident].mean()) if confident.any() else float("nan"),
    }
    for keep in (0.95, 0.99):
        # Threshold t on rotation_upright_prob that keeps `keep` of truly upright images.
        t = float(np.quantile(upright_p[~rotated], 1 - keep)) if (~rotated).any() else float("nan")
        out[f"t_keep{round(keep * 100)}"] = t
        out[f"rotated_recall_keep{round(keep * 100)}"] = float((upright_p[rotated] < t).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deb-root", type=Path, default=None, help="root where the Debian packages were extracted")
    ap.add_argument("--crops", type=int, default=24, help="random crops per photo")
    ap.add_argument("--l2", type=float, default=0.1, help="L2 penalty on standardised weights")
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--report", type=Path, default=None, help="also write the CV report as JSON here")
    ap.add_argument("--no-write", action="store_true", help="evaluate only")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    photos = skimage_photos() + sklearn_photos() + debian_photos(args.deb_root, DEBIAN_PHOTOS)
    text = skimage_text() + debian_photos(args.deb_root, DEBIAN_TEXT)
    groups = sorted({p.group for p in photos})
    print(f"{len(photos)} photos in {len(groups)} groups; {len(text)} text images (evaluation only)")

    def build(items: list[Photo]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, ys, gs = [], [], []
        for photo in items:
            x = featurize(random_crops(photo, args.crops, args.seed))
            xs.append(x)
            ys.append(np.tile(np.arange(4), len(x) // 4))
            gs += [photo.group] * len(x)
        return np.concatenate(xs), np.concatenate(ys), np.asarray(gs)

    x, y, g = build(photos)
    xt, yt, gt = build(text) if text else (None, None, None)
    print(f"features {x.shape} in {time.perf_counter() - started:.1f}s")

    prob = np.zeros((len(y), 4))
    for group in groups:
        test = g == group
        mean, scale, w = fit(x[~test], y[~test], args.l2)
        prob[test] = predict(x[test], mean, scale, w)
    overall = metrics(prob, y)
    per_photo = {group: metrics(prob[g == group], y[g == group]) for group in groups}
    print(f"leave-one-photo-out over {len(groups)} photos: " + json.dumps({k: round(v, 3) for k, v in overall.items()}))
    for group, m in per_photo.items():
        print(
            f"  {group:26s} acc4={m['acc4']:.2f} upright_kept={m['upright_kept']:.2f} "
            f"rotated_recall={m['rotated_recall']:.2f} confident_share={m['confident_share']:.2f}"
        )

    mean, scale, w = fit(x, y, args.l2)
    text_report: dict[str, dict[str, float]] = {}
    if xt is not None:
        pt = predict(xt, mean, scale, w)
        text_report = {grp: metrics(pt[gt == grp], yt[gt == grp]) for grp in sorted(set(gt))}
        for grp, m in text_report.items():
            print(f"  text (final model) {grp:18s} acc4={m['acc4']:.2f} confident_share={m['confident_share']:.2f}")
    per_angle = {ANGLES[r]: float((prob[y == r].argmax(axis=1) == r).mean()) for r in range(4)}
    report = {
        "cv": "leave-one-photo-out",
        "overall": overall,
        "per_angle_acc": per_angle,
        "per_photo": per_photo,
        "text_eval_final_model": text_report,
    }
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    if not args.no_write:
        payload = {
            "feature_version": FEATURE_VERSION,
            "model": "conditional logit over the four candidate rotations (shared linear score, softmax)",
            "n_features": int(x.shape[-1]),
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "weights": w.tolist(),
            "training": {
                "script": "bench/train_rotation.py",
                "date": dt.date.today().isoformat(),
                "seed": args.seed,
                "l2": args.l2,
                "crops_per_photo": args.crops,
                "samples": len(y),
                "photos": sorted({f"{p.group}:{p.name}" for p in photos}),
                "cv": {"scheme": "leave-one-photo-out", "groups": len(groups), **overall, "per_angle_acc": per_angle},
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.out}")
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
