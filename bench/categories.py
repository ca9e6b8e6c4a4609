"""How well the category inputs work on images built or found offline: faces (portrait cue) and the taxonomy.

    python3 bench/categories.py [--ocv-root /tmp/ocvdoc] [--out docs/categories.json]

- **False portraits**: images without a person (Debian wallpapers under /usr/share/wallpapers and
  /usr/share/backgrounds, one screenshot/image per wallpaper; scikit-image and scikit-learn photos without
  people; the hard corpus's report-split scenes, documents and text renders). A row counts as portrait when
  `face_area_fraction >= 0.02`, the threshold of the built-in `sft` recipe.
- **Portraits found**: the only photos of people with a visible frontal face that ship offline: scikit-image's
  astronaut and, with `--ocv-root` (`apt-get download opencv-doc && dpkg -x opencv-doc*.deb DIR`), OpenCV's
  messi5.jpg. Two images: a sanity check, not a recall figure.
- **Taxonomy**: top-1 of the embedding pass's classifier mapped to `taxonomy_path`, on photos with a
  hand-given top node (food, animal, object, ...).

Prints JSON; nothing is tuned here (the 0.02 floor was set before this run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import emit, machine  # noqa: E402
from corpus.hard import build_split  # noqa: E402
from filters.base import SampleBatch  # noqa: E402
from filters.embedding import ImageEmbeddingScorer  # noqa: E402
from filters.faces import FacesScorer  # noqa: E402
from flywheel.imaging import decode, encode_jpeg  # noqa: E402

PORTRAIT = 0.02
# scikit-image / scikit-learn photos and the top node a person gives them
TAXONOMY_TRUTH = {
    "coffee": "food",
    "chelsea": "animal",
    "rocket": "object",
    "astronaut": "person",
    "motorcycle_left": "object",
    "cat": "animal",
    "china.jpg": "nature",
    "flower.jpg": "plant",
}
NO_PEOPLE = ("coffee", "chelsea", "rocket", "cat", "motorcycle_left", "china.jpg", "flower.jpg")


def _rgb(arr: np.ndarray) -> np.ndarray:
    return np.stack([arr] * 3, -1) if arr.ndim == 2 else arr[..., :3]


def skimage_photos() -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in ("coffee", "chelsea", "rocket", "astronaut", "cat"):
        out[name] = _rgb(getattr(data, name)())
    out["motorcycle_left"] = _rgb(data.stereo_motorcycle()[0])
    try:
        from sklearn.datasets import load_sample_image

        for name in ("china.jpg", "flower.jpg"):
            out[name] = load_sample_image(name)
    except ImportError:
        pass
    return out


def wallpapers() -> dict[str, bytes]:
    """One image per Debian wallpaper (the largest file of each KDE wallpaper folder; each MATE background)."""
    found: dict[str, bytes] = {}
    for root in (Path("/usr/share/wallpapers"), Path("/usr/share/backgrounds")):
        if not root.is_dir():
            continue
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file())
        by_wallpaper: dict[str, Path] = {}
        for p in files:
            key = str(p.relative_to(root)).split("/contents/")[0] if "/contents/" in str(p) else str(p)
            if key not in by_wallpaper or p.stat().st_size > by_wallpaper[key].stat().st_size:
                by_wallpaper[key] = p
        for key, p in by_wallpaper.items():
            found[f"{root.name}/{key}"] = p.read_bytes()
    return found


def faces(images: dict[str, bytes]) -> dict[str, float | None]:
    scorer = FacesScorer()
    names = list(images)
    decoded = [decode(images[n], 256) for n in names]
    batch = SampleBatch(ids=names, images=[None] * len(names), captions=[None] * len(names), decoded=decoded)
    return dict(zip(names, scorer(batch)["face_area_fraction"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ocv-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    photos = skimage_photos()
    free: dict[str, dict[str, bytes]] = {
        "wallpapers": wallpapers(),
        "photos without people": {n: encode_jpeg(photos[n]) for n in NO_PEOPLE if n in photos},
    }
    for sample in build_split("report"):
        if sample.category in ("scene", "document", "text") and sample.variant is None:
            free.setdefault(f"hard corpus {sample.category}s", {})[sample.name] = sample.data
    false_portraits = {}
    for group, images in free.items():
        areas = faces(images)
        hits = sorted(n for n, a in areas.items() if a is not None and a >= PORTRAIT)
        false_portraits[group] = {"images": len(images), "portrait": len(hits), "examples": hits[:5]}
    people = {"astronaut": encode_jpeg(photos["astronaut"])}
    if args.ocv_root is not None:
        messi = next(args.ocv_root.rglob("messi5.jpg"), None)
        if messi is not None:
            people["messi5.jpg"] = messi.read_bytes()
    portrait_areas = faces(people)
    scorer = ImageEmbeddingScorer()
    names = [n for n in TAXONOMY_TRUTH if n in photos]
    crops = np.stack([scorer.prepare(decode(encode_jpeg(photos[n]), 256)) for n in names])
    out = scorer(crops, [None] * len(names))
    taxonomy = [
        {"image": n, "label": lab, "path": path, "expected": truth, "ok": path.split("/")[0] == truth}
        for n, lab, path in zip(names, out["imagenet_label"], out["taxonomy_path"], strict=True)
        for truth in [TAXONOMY_TRUTH[n]]
    ]
    report = {
        "command": "python3 bench/categories.py" + (f" --ocv-root {args.ocv_root}" if args.ocv_root else ""),
        "machine": machine(),
        "portrait_threshold": PORTRAIT,
        "false_portraits": false_portraits,
        "portraits_found": {n: a for n, a in portrait_areas.items()},
        "taxonomy": taxonomy,
        "taxonomy_top_node_accuracy": sum(t["ok"] for t in taxonomy) / max(1, len(taxonomy)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
