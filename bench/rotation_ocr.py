"""OCR line orientation as a rotation detector for text images: measured on the rotation benches' views.

Why: issue 13 suggests OCR orientation for text renders, the category the CNN head catches least after photos.
The rapidocr wheel ships what it takes: the DBNet line detector (a line of a quarter-turned image comes out as
a tall box) and the 0/180 line classifier (which way up a horizontal line crop reads). A page's rotation is
the vote of its lines, weighted by line length: tall lines mean 90 or 270 (the crop is turned back a quarter,
then the classifier tells which), horizontal lines 0 or 180.

Views and sides are `bench/train_rotation_net.py`'s (224 px views, each shown in its four rotations); only
views with at least `--min-lines` detected lines get a verdict, the rest abstain::

    nice python3 bench/rotation_ocr.py --side tune
    nice python3 bench/rotation_ocr.py --side report --json /tmp/rotation_ocr_report.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import train_rotation_net as views_bench
from flywheel.models.ocr import RapidOcr, unavailable_reason


def page_rotation(ocr: RapidOcr, rgb: np.ndarray) -> tuple[int | None, int]:
    """(clockwise quarter turns the displayed page shows, None when no line was found; lines detected)."""
    from rapidocr.utils.process_img import get_rotate_crop_image

    ocr.load()  # idempotent; detect() and the classifier need the sessions
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    boxes = ocr.detect(bgr)
    if not boxes:
        return None, 0
    crops, tall = [], []
    for box, _ in boxes:
        width = max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3]))
        height = max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2]))
        tall.append(height / max(width, 1.0) >= 1.5)  # the crop function turns such crops back a quarter
        crops.append(get_rotate_crop_image(bgr, box.copy()))
    votes = np.zeros(4)
    for is_tall, (label, score), crop in zip(tall, ocr._cls(crops).cls_res, crops, strict=True):
        votes[(1 if is_tall else 0) + (2 if str(label) == "180" else 0)] += float(score) * crop.shape[1]
    return int(votes.argmax()), len(boxes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    views_bench.add_view_arguments(ap)
    ap.add_argument("--side", choices=("tune", "report"), default="tune")
    ap.add_argument("--min-lines", type=int, default=2, help="lines a view needs for a verdict")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if (reason := unavailable_reason()) is not None:
        ap.error(reason)  # one line and exit status 2, before any view is built
    ocr = RapidOcr(threads=1)
    views = views_bench.build(args.side, args)
    started = time.perf_counter()
    by_kind: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for view in views:
        for shown in range(4):
            predicted, lines = page_rotation(ocr, np.rot90(view.crop, k=-shown))
            by_kind[view.kind].append((shown, predicted if lines >= args.min_lines else None))
    result: dict[str, object] = {"side": args.side, "seconds": round(time.perf_counter() - started, 1)}
    for kind, rows in sorted(by_kind.items()):
        judged = [(s, p) for s, p in rows if p is not None]
        upright = [p for s, p in judged if s == 0]
        result[kind] = {
            "views_x4": len(rows),
            "judged": len(judged),
            "acc4_judged": round(float(np.mean([s == p for s, p in judged])), 3) if judged else None,
            # recall of rotated views over all rotated views (abstentions count as misses)
            "rotated_caught": round(sum(p != 0 for s, p in judged if s != 0) / max(1, sum(s != 0 for s, _ in rows)), 3),
            "upright_flagged": round(sum(p != 0 for p in upright) / max(1, sum(s == 0 for s, _ in rows)), 3),
            "confusions": {f"{s * 90}->{p * 90}": n for (s, p), n in sorted(Counter(judged).items()) if s != p},
        }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
