"""rapidocr (PP-OCR ONNX, the text filter's engine) against tesseract, side by side on the same images.

    python3 bench/ocr_compare.py --pure 6 --complex 2 --compositional 2 --workers 2 --out docs/ocr_compare.json

1. Renders of known text for every script `captioners.synth` renders with a Noto font: pure (1-3 phrases,
   plain background, --font-px), complex (paragraphs, slides, tables, menus, --complex-px) and compositional
   (a sign pasted in perspective on a photo). The seeds are those of bench/ocr_cer.py (pure 1000+i, complex
   2000+i, compositional 3000+i); the thresholds were tuned on other seeds (--tune, 5000+). CER is
   (substitutions + insertions + deletions) / reference characters, whitespace ignored, summed per script.
   Engines: `rapidocr` is the text filter itself (`filters.text.TextScorer` on the PNG bytes), `tesseract` the
   captioners' `TesseractOcr`, `auto` the captioners' default (`AutoOcr`: rapidocr, and tesseract for images
   whose detected lines rapidocr cannot read), composed here from the other two runs exactly as AutoOcr does.
2. Photos without text (false-text rate): the tune set is scikit-image and scikit-learn sample photos, GNOME
   and MATE abstract backgrounds; the report set is the KDE Plasma wallpapers (Debian plasma-workspace-wallpapers)
   and the MATE nature photos (mate-backgrounds): different source images. Images with any legible text or logo
   (scikit-image astronaut and rocket, MATE GreenTraditional, GNOME pixels) were left out after looking at them.
   A photo counts as false text when the filter's text_language is not `none`, or when tesseract returns text.
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioners.ocr import OcrError, TesseractOcr
from captioners.synth.corpus import SCRIPTS, fonts_for
from captioners.synth.render import render_complex, render_compositional, render_pure
from filters.config import TextConfig
from filters.text import LINE_BOX_PER_EM, TextScorer, ocr_view
from flywheel.imaging import DecodeLimits
from flywheel.models.ocr import RapidOcr

SKIMAGE_TUNE = (
    "chelsea",
    "coffee",
    "camera",
    "hubble_deep_field",
    "coins",
    "brick",
    "grass",
    "gravel",
    "retina",
    "immunohistochemistry",
    "moon",
    "cell",
    "horse",
)
SKLEARN_IMAGES = ("china.jpg", "flower.jpg")
GNOME_EXCLUDED = ("pixels-d", "pixels-l")  # app icons
MATE_ABSTRACT = ("Elephants.jpg", "Flow.png", "Gulp.png")
EXPECTED_LANGUAGE = {"Latn": "en", "Hans": "zh"}  # every other rendered script is `other`


def edits(truth: str, seen: str) -> tuple[int, int]:
    a, b = "".join(truth.split()), "".join(seen.split())
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal"), len(a)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


_SCORER: TextScorer | None = None
_LOOSE: RapidOcr | None = None


def _scorer() -> TextScorer:
    global _SCORER
    if _SCORER is None:
        _SCORER = TextScorer(TextConfig(device="cpu"), threads=1)
        _SCORER.load()
    return _SCORER


def _loose() -> RapidOcr:
    """No gates at all (the detector's own 0.3 box floor): one read that the tune sweep re-gates offline."""
    global _LOOSE
    if _LOOSE is None:
        _LOOSE = RapidOcr(det_min=0.3, max_line_frac=1.0, line_min=0.0, read_min=0.0, min_height_px=0.0)
        _LOOSE.load()
    return _LOOSE


def _rapid(data: bytes) -> tuple[dict[str, Any], float]:
    scorer = _scorer()  # loaded once per worker, outside the timing
    started = time.perf_counter()
    out = scorer.score_images([data])
    return {k: v[0] for k, v in out.items()}, time.perf_counter() - started


def _tesseract(img: Image.Image) -> tuple[str | None, float, str | None]:
    try:
        res = TesseractOcr().read(img)
    except OcrError as exc:  # e.g. a tesseract process killed from outside: reported, not counted
        return None, 0.0, str(exc)
    return res.text, res.seconds, None


def render(script: str, kind: str, seed: int, px: int) -> Any:
    rng = np.random.default_rng(seed)
    spec = SCRIPTS[script]
    if kind == "pure":
        return render_pure(spec, rng, font_px=px)
    if kind == "complex":
        return render_complex(spec, rng, font_px=px)
    return render_compositional(spec, rng)


def render_job(args: tuple[str, str, int, int, bool]) -> dict[str, Any]:
    script, kind, seed, px, with_tesseract = args
    sample = render(script, kind, seed, px)
    truth = "\n".join(sample.lines)
    data = _png(sample.image)
    rapid, rapid_s = _rapid(data)
    row: dict[str, Any] = {
        "script": script,
        "kind": kind,
        "seed": seed,
        "px": sample.font_px,
        "truth": truth,
        "rapidocr": rapid["ocr_text"],
        "rapidocr_s": round(rapid_s, 3),
        "language": rapid["text_language"],
        "text_script": rapid["text_script"],
        "lines_found": rapid["text_lines"],
        "lines_true": len(sample.lines),
        "char_height_median": rapid["text_char_height_median"],
    }
    row["rapidocr_edits"], row["chars"] = edits(truth, rapid["ocr_text"] or "")
    if with_tesseract:
        text, seconds, error = _tesseract(sample.image)
        row.update(tesseract=text, tesseract_s=round(seconds, 3), tesseract_error=error)
        row["tesseract_edits"] = edits(truth, text or "")[0] if error is None else None
        # AutoOcr: rapidocr's page when readable (or empty), else tesseract's read.
        fallback = rapid["text_lines"] > 0 and rapid["text_script"] == "unknown"
        row["auto_fallback"] = fallback
        row["auto_edits"] = row["tesseract_edits"] if fallback else row["rapidocr_edits"]
        row["auto_s"] = round(rapid_s + (seconds if fallback else 0.0), 3)
    return row


def photo_paths(which: str) -> list[tuple[str, str]]:
    """(name, path or 'skimage:NAME') of the text-free photos of the `tune` or `report` set that are installed."""
    out: list[tuple[str, str]] = []
    if which == "tune":
        out += [(f"skimage/{n}", f"skimage:{n}") for n in SKIMAGE_TUNE]
        import sklearn

        folder = Path(sklearn.__file__).parent / "datasets" / "images"
        out += [(f"sklearn/{n}", str(folder / n)) for n in SKLEARN_IMAGES if (folder / n).is_file()]
        gnome = Path("/usr/share/backgrounds/gnome")
        out += [(f"gnome/{p.stem}", str(p)) for p in sorted(gnome.glob("*.webp")) if p.stem not in GNOME_EXCLUDED]
        mate = Path("/usr/share/backgrounds/mate/abstract")
        out += [(f"mate/{n}", str(mate / n)) for n in MATE_ABSTRACT if (mate / n).is_file()]
    else:
        for d in sorted(Path("/usr/share/wallpapers").glob("*/contents/images")):
            sizes = sorted(d.iterdir())
            pick = [p for p in sizes if p.name.startswith("1920x1080")] or sizes[-1:]
            out += [(f"kde/{d.parent.parent.name}", str(pick[0]))] if pick else []
        mate = Path("/usr/share/backgrounds/mate/nature")
        out += [(f"mate/{p.name}", str(p)) for p in sorted(mate.glob("*.jpg"))]
    return out


def _photo_bytes(path: str) -> tuple[bytes, Image.Image]:
    if path.startswith("skimage:"):
        import skimage.data

        arr = np.asarray(getattr(skimage.data, path.split(":", 1)[1])())
        if arr.dtype == bool:  # the horse silhouette
            arr = arr.astype(np.uint8) * 255
        img = Image.fromarray(arr if arr.ndim == 3 else np.stack([arr] * 3, axis=-1)).convert("RGB")
        return _png(img), img
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        return data, im.convert("RGB")


def photo_job(args: tuple[str, str, bool]) -> dict[str, Any]:
    name, path, with_tesseract = args
    data, img = _photo_bytes(path)
    rapid, rapid_s = _rapid(data)
    row: dict[str, Any] = {
        "photo": name,
        "size": list(img.size),
        "rapidocr_text": rapid["ocr_text"],
        "rapidocr_language": rapid["text_language"],
        "rapidocr_lines": rapid["text_lines"],
        "rapidocr_false": rapid["text_language"] != "none",
        "rapidocr_s": round(rapid_s, 3),
    }
    if with_tesseract:
        text, seconds, error = _tesseract(img)
        row.update(tesseract_text=text, tesseract_s=round(seconds, 3), tesseract_error=error)
        row["tesseract_false"] = bool(text and len(text.strip()) >= 2)
        fallback = rapid["text_lines"] > 0 and rapid["text_script"] == "unknown"
        row["auto_false"] = row["tesseract_false"] if fallback else row["rapidocr_false"]
    return row


def loose_job(args: tuple[str, str, int, int]) -> dict[str, Any]:
    """Tune sweep input: every box the detector scores >= 0.3, with its recognition, on a tune render/photo."""
    kind_or_photo, source, seed, px = args
    if kind_or_photo == "photo":
        data, _ = _photo_bytes(source)
        truth, script, kind, px = None, None, "photo", 0
    else:
        sample = render(source, kind_or_photo, seed, px)
        data, truth, script, kind = _png(sample.image), "\n".join(sample.lines), source, kind_or_photo
        px = sample.font_px
    view = ocr_view(data, TextConfig().max_side, DecodeLimits())
    assert view.rgb is not None
    page = _loose().read(view.rgb)
    found = [(list(map(list, ln.box)), ln.det_score, ln.text, ln.rec_score) for ln in page.lines]
    hw = list(view.rgb.shape[:2])
    return {"kind": kind, "script": script, "truth": truth, "hw": hw, "px": px, "found": found}


def box_per_em(rows: list[dict[str, Any]]) -> float | None:
    """Median over pure tune renders (one font size each) of the gated lines' median box height / font px."""
    gate = RapidOcr(**{k: v for k, v in vars(TextConfig()).items() if k in ("det_min", "max_line_frac")})
    ratios = []
    for r in rows:
        if r["kind"] != "pure":
            continue
        found = [(np.asarray(b, dtype=np.float32), d, t, s) for b, d, t, s in r["found"]]
        heights = [ln.height for ln in gate.page(found, tuple(r["hw"])).lines]
        if heights:
            ratios.append(statistics.median(heights) / r["px"])
    return round(statistics.median(ratios), 3) if ratios else None


def sweep(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Photo false-text count and render line recall / language accuracy per threshold setting."""
    from filters.text import page_columns

    out = []
    for det_min in (0.5, 0.6, 0.7, 0.8):
        for max_line_frac in (0.3, 0.4, 0.6):
            for read_min in (0.8, 0.9, 0.95):
                gate = RapidOcr(det_min=det_min, max_line_frac=max_line_frac, read_min=read_min)
                false, photos, lang_ok, renders, found_lines, true_lines, edits_sum, chars = 0, 0, 0, 0, 0, 0, 0, 0
                for r in rows:
                    found = [(np.asarray(b, dtype=np.float32), d, t, s) for b, d, t, s in r["found"]]
                    page = gate.page(found, tuple(r["hw"]))
                    cols = page_columns(page, tuple(r["hw"]), max(r["hw"]))
                    if r["kind"] == "photo":
                        photos += 1
                        false += cols["text_language"] != "none"
                        continue
                    renders += 1
                    lang_ok += cols["text_language"] == EXPECTED_LANGUAGE.get(r["script"], "other")
                    found_lines += min(cols["text_lines"], r["truth"].count("\n") + 1)
                    true_lines += r["truth"].count("\n") + 1
                    if r["script"] in ("Latn", "Hans", "Jpan"):
                        e, n = edits(r["truth"], cols["ocr_text"])
                        edits_sum, chars = edits_sum + e, chars + n
                out.append(
                    {
                        "det_min": det_min,
                        "max_line_frac": max_line_frac,
                        "read_min": read_min,
                        "photo_false": f"{false}/{photos}",
                        "render_line_recall": round(found_lines / max(1, true_lines), 3),
                        "language_accuracy": round(lang_ok / max(1, renders), 3),
                        "cer_latn_hans_jpan": round(edits_sum / max(1, chars), 4),
                    }
                )
    return out


def summarise(rows: list[dict[str, Any]], scripts: Iterable[str]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for script in scripts:
        for kind in ("pure", "complex", "compositional"):
            mine = [r for r in rows if r["script"] == script and r["kind"] == kind]
            if not mine:
                continue
            n = sum(r["chars"] for r in mine)
            entry: dict[str, Any] = {"images": len(mine), "chars": n}
            for engine in ("rapidocr", "tesseract", "auto"):
                ok = [r for r in mine if r.get(f"{engine}_edits") is not None]
                if not ok:
                    continue
                entry[f"{engine}_cer"] = round(sum(r[f"{engine}_edits"] for r in ok) / max(1, n), 4)
                entry[f"{engine}_s"] = round(statistics.mean(r[f"{engine}_s"] for r in ok), 3)
            want = EXPECTED_LANGUAGE.get(script, "other")
            entry["language_ok"] = f"{sum(r['language'] == want for r in mine)}/{len(mine)}"
            table.setdefault(script, {})[kind] = entry
    return table


def photo_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"images": len(rows)}
    for engine in ("rapidocr", "tesseract", "auto"):
        flags = [r[f"{engine}_false"] for r in rows if f"{engine}_false" in r]
        if flags:
            out[f"{engine}_false"] = f"{sum(flags)}/{len(flags)}"
            out[f"{engine}_rate"] = round(sum(flags) / len(flags), 4)
    for engine in ("rapidocr", "tesseract"):
        times = [r[f"{engine}_s"] for r in rows if f"{engine}_s" in r]
        if times:
            out[f"{engine}_s"] = round(statistics.mean(times), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pure", type=int, default=6, help="pure renders per script")
    ap.add_argument("--complex", type=int, default=2, help="complex renders per script")
    ap.add_argument("--compositional", type=int, default=2, help="signs-in-photos renders per script")
    ap.add_argument("--font-px", type=int, default=32)
    ap.add_argument("--complex-px", type=int, default=24)
    ap.add_argument("--scripts", default=",".join(s for s in SCRIPTS if fonts_for(SCRIPTS[s])))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-tesseract-photos", action="store_true", help="skip tesseract on the photo report set")
    ap.add_argument("--no-tesseract", action="store_true", help="rapidocr only (renders and photos)")
    ap.add_argument("--tune", action="store_true", help="also sweep the gates on the tune renders and photos")
    ap.add_argument("--out", default="docs/ocr_compare.json")
    a = ap.parse_args()
    scripts = a.scripts.split(",")
    started = time.perf_counter()
    tess = not a.no_tesseract
    jobs = [(s, "pure", 1000 + i, a.font_px, tess) for s in scripts for i in range(a.pure)]
    jobs += [(s, "complex", 2000 + i, a.complex_px, tess) for s in scripts for i in range(a.complex)]
    jobs += [(s, "compositional", 3000 + i, 0, tess) for s in scripts for i in range(a.compositional)]
    report: dict[str, Any] = {
        "machine": "2-core x86_64 container, no GPU",
        "platform": f"{platform.machine()} {platform.python_version()}",
        "command": "python3 " + " ".join(sys.argv),
        "gates": vars(TextConfig()),
        "line_box_per_em": LINE_BOX_PER_EM,
    }
    with ProcessPoolExecutor(a.workers) as pool:
        rows = list(pool.map(render_job, jobs))
        photo_tess = tess and not a.no_tesseract_photos
        photos = list(pool.map(photo_job, [(n, p, photo_tess) for n, p in photo_paths("report")]))
        tune_photos = list(pool.map(photo_job, [(n, p, False) for n, p in photo_paths("tune")]))
        if a.tune:
            tune_jobs = [(k, s, seed, px) for s in scripts for k, seed, px in (("pure", 5000, 32), ("pure", 5001, 32))]
            tune_jobs += [("complex", s, 6000, 24) for s in scripts] + [("compositional", s, 7000, 0) for s in scripts]
            tune_jobs += [("photo", p, 0, 0) for _, p in photo_paths("tune")]
            loose = list(pool.map(loose_job, tune_jobs))
            report["tune_sweep"] = sweep(loose)
            report["tune_box_height_per_font_px"] = box_per_em(loose)
    pure = [r for r in rows if r["kind"] == "pure" and r["char_height_median"]]
    report.update(
        seconds=round(time.perf_counter() - started, 1),
        cer=summarise(rows, scripts),
        photos_report=photo_summary(photos),
        photos_tune=photo_summary(tune_photos),
        # Pure renders have one font size, so the median height should equal --font-px if LINE_BOX_PER_EM is right.
        pure_char_height_over_font_px=round(statistics.median(r["char_height_median"] / r["px"] for r in pure), 3)
        if pure
        else None,
        false_text_photos=[r for r in photos + tune_photos if r["rapidocr_false"] or r.get("tesseract_false")],
        worst=sorted(rows, key=lambda r: -r["rapidocr_edits"] / max(1, r["chars"]))[:10],
        rows=rows,
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    print("| script | kind | images | rapidocr CER | tesseract CER | auto CER | rapidocr s | tesseract s | language |")
    print("|---|---|---|---|---|---|---|---|---|")
    for script, kinds in report["cer"].items():
        for kind, e in kinds.items():
            print(
                f"| {script} | {kind} | {e['images']} | {e.get('rapidocr_cer', float('nan')):.2%} | "
                f"{e.get('tesseract_cer', float('nan')):.2%} | {e.get('auto_cer', float('nan')):.2%} | "
                f"{e.get('rapidocr_s', 0)} | {e.get('tesseract_s', 0)} | {e['language_ok']} |"
            )
    print("photos (report):", report["photos_report"])
    print("photos (tune):", report["photos_tune"])
    print("pure char height / font px:", report["pure_char_height_over_font_px"])
    for row in report.get("tune_sweep", []):
        print(row)
    if a.tune:
        print("tune: line box height / font px:", report["tune_box_height_per_font_px"])
    print(f"total {report['seconds']}s -> {a.out}")


if __name__ == "__main__":
    main()
