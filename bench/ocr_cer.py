"""Character error rate of the offline OCR backend per script, on synthetic renders of known text.

    python3 bench/ocr_cer.py --pure 6 --complex 2 --font-px 32 --out docs/ocr_cer.json

Pure renders: 1-3 phrases on a plain background at --font-px (the glyph em size in pixels).
Complex renders: paragraphs, slides, posters, tables and menus at --complex-px. CER is
(substitutions + insertions + deletions) / reference characters, whitespace ignored (word
spacing of CJK/Thai is not a character error), summed over all images of a script.
"""

from __future__ import annotations

import argparse
import difflib
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioners.ocr import OcrError, TesseractOcr
from captioners.synth.corpus import SCRIPTS
from captioners.synth.render import render_complex, render_pure


def edits(truth: str, seen: str) -> tuple[int, int]:
    a, b = "".join(truth.split()), "".join(seen.split())
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal"), len(a)


def job(args: tuple[str, str, int, int]) -> dict[str, object]:
    script, kind, seed, px = args
    rng = np.random.default_rng(seed)
    spec = SCRIPTS[script]
    sample = render_pure(spec, rng, font_px=px) if kind == "pure" else render_complex(spec, rng, font_px=px)
    try:
        result = TesseractOcr().read(sample.image)
    except OcrError as exc:  # e.g. a tesseract process killed from outside: reported, not counted as CER
        return {"script": script, "kind": kind, "error": str(exc), "edits": 0, "chars": 0, "seconds": 0.0}
    err, n = edits("\n".join(sample.lines), result.text)
    return {
        "script": script,
        "kind": kind,
        "edits": err,
        "chars": n,
        "seconds": result.seconds,
        "detected": result.script,
        "truth": "\n".join(sample.lines),
        "ocr": result.text,
        "px": px,
        "layout": sample.layout,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pure", type=int, default=6, help="pure renders per script")
    ap.add_argument("--complex", type=int, default=2, help="complex renders per script")
    ap.add_argument("--font-px", type=int, default=32)
    ap.add_argument("--complex-px", type=int, default=24)
    ap.add_argument("--scripts", default=",".join(SCRIPTS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="docs/ocr_cer.json")
    a = ap.parse_args()
    jobs = [(s, "pure", 1000 + i, a.font_px) for s in a.scripts.split(",") for i in range(a.pure)]
    jobs += [(s, "complex", 2000 + i, a.complex_px) for s in a.scripts.split(",") for i in range(a.complex)]
    started = time.perf_counter()
    with ProcessPoolExecutor(a.workers) as pool:
        rows = list(pool.map(job, jobs))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for kind in ("pure", "complex"):
        for script in a.scripts.split(","):
            mine = [r for r in rows if r["script"] == script and r["kind"] == kind and "error" not in r]
            if not mine:
                continue
            e, n = sum(int(r["edits"]) for r in mine), sum(int(r["chars"]) for r in mine)
            table.setdefault(script, {})[kind] = {
                "cer": round(e / max(1, n), 4),
                "images": len(mine),
                "chars": n,
                "s_per_image": round(sum(float(r["seconds"]) for r in mine) / len(mine), 2),
            }
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "command": "python3 " + " ".join(sys.argv),
        "font_px": a.font_px,
        "complex_px": a.complex_px,
        "seconds": round(time.perf_counter() - started, 1),
        "cer": table,
        "errors": [r for r in rows if "error" in r],
        "worst": sorted(rows, key=lambda r: -int(r["edits"]) / max(1, int(r["chars"])))[:8],
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    print("| script | pure CER | complex CER | pure images | s/image |")
    print("|---|---|---|---|---|")
    for script, entry in table.items():
        p, c = entry.get("pure", {}), entry.get("complex", {})
        print(
            f"| {script} | {p.get('cer', float('nan')):.2%} | {c.get('cer', float('nan')):.2%} | "
            f"{p.get('images', 0)} | {p.get('s_per_image', 0)} |"
        )
    print(f"total {report['seconds']}s, {len(report['errors'])} OCR error(s) -> {a.out}")


if __name__ == "__main__":
    main()
