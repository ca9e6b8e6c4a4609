"""Upright photos and drawings from Debian's `gcompris-qt-data`, curated by eye, for the rotation trainer.

Why: the rotation heads' weak case is close-up photos (animals, objects, buildings without sky), and the
other Debian photo packages hold mostly landscapes. GCompris ships about 190 real photos of exactly that
(animals in the wild and on farms, monuments, fish, windmills and dams, household objects, musicians) and
116 upright cartoon drawings, packed in Qt resource bundles (`bench/rcc.py` reads them). Every file listed
here was looked at on a contact sheet; left out: top-down shots with no upright (tools lying on a table,
cutlery, plates, pencils, balls, a drum set seen from above, two aerial views of forts), close-up solar
panels, and the puzzle pieces of the `paintings` and `details` activities.

Fetch without installing: `apt-get download gcompris-qt-data && dpkg -x gcompris-qt-data_*.deb DEB_ROOT`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from bench.rcc import read_rcc

RCC_DIR = "usr/share/gcompris-qt/rcc"
_SRC = "gcompris/src/activities"
# bundle -> (folder inside it, names to leave out; None keeps every image of the folder)
PHOTOS: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {
    "erase": (("erase/resource", frozenset()),),
    "explore_monuments": (("explore_monuments/resource", frozenset({"castillodeSanMarcos", "castleClinton"})),),
    "explore_world_animals": (("explore_world_animals/resource/animals", frozenset()),),
    "explore_farm_animals": (("explore_farm_animals/resource/animals", frozenset()),),
    "explore_world_music": (("explore_world_music/resource/music", frozenset({"africa"})),),
    "categorization": (
        ("categorization/resource/images/fishes", frozenset()),
        ("categorization/resource/images/monuments", frozenset()),
        ("categorization/resource/images/renewable", frozenset({"solar4", "solar5"})),
        (
            "categorization/resource/images/others",
            frozenset({"baseball", "erasers", "knife", "pan", "pencil", "pillow", "plate", "spoons", "volleyball"}),
        ),
    ),
}
DRAWINGS: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {
    "lang": (("lang/resource/words_sample", frozenset()),),
}


def load(deb_root: Path, table: dict[str, tuple[tuple[str, frozenset[str]], ...]]) -> dict[str, np.ndarray]:
    """Name -> RGB array (transparency flattened on white) of every listed image; {} without the package."""
    out: dict[str, np.ndarray] = {}
    for bundle, folders in table.items():
        path = deb_root / RCC_DIR / f"{bundle}.rcc"
        if not path.is_file():
            return {}
        files = read_rcc(path)
        for folder, skip in folders:
            prefix = f"{_SRC}/{folder}/"
            for name in sorted(files):
                stem = Path(name).stem
                if not name.startswith(prefix) or not name.endswith(".webp") or stem in skip:
                    continue
                with Image.open(io.BytesIO(files[name])) as img:
                    rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                flat = Image.alpha_composite(white, rgba).convert("RGB")
                out[f"gc_{Path(name).parent.name}_{stem}"] = np.asarray(flat)
    return out
