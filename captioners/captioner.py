"""Caption a batch of samples: every requested type from its configured backend, checked, fused.

One instance lives in one Ray actor (models load once); `__call__` maps image bytes and raw
captions to the caption columns of `captioners.columns`. Images are decoded through the
bounded decoder (`flywheel.imaging.decode`), so a hostile file is an error row, not a crash.
OCR runs whenever text or structured captions are requested, whatever their backend: it
backs the OCR columns and the check that a VLM's text caption only quotes text OCR can see.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from captioners import columns as C
from captioners.checks import CaptionChecks
from captioners.config import CaptionConfig, not_produced_message
from captioners.fuse import fuse
from captioners.ocr import OcrError, OcrResult, make_ocr
from captioners.script import SCRIPT_NAMES
from captioners.structured import dumps, from_ocr, parse_structured, repair_prompt
from captioners.types import TYPES, needs_ocr
from captioners.vlm import VlmBackend, VlmRequest, bounded_png
from flywheel.errors import UserError
from flywheel.imaging import decode


class Captioner:
    """Maps (image bytes, raw caption) rows to caption columns."""

    def __init__(self, cfg: CaptionConfig, kinds: Sequence[str], cache_dir: str | Path) -> None:
        self.cfg = cfg
        self.kinds = tuple(kinds)
        self.cache_dir = Path(cache_dir)
        self.checks = CaptionChecks(cfg.checks)
        self.ocr = make_ocr(cfg.ocr) if needs_ocr(self.kinds) else None
        self._backends: dict[str, VlmBackend] = {}

    def backend(self, name: str) -> VlmBackend:
        if name not in self._backends:
            if name == "transformers":
                from captioners.vlm_transformers import TransformersVlm

                self._backends[name] = TransformersVlm(self.cfg.transformers)
            elif name == "openai":
                from captioners.vlm_openai import OpenAIVlm

                self._backends[name] = OpenAIVlm(self.cfg.openai, self.cache_dir)
            else:
                raise UserError(f"{name} is not a VLM backend")
        return self._backends[name]

    def __call__(self, images: Sequence[bytes | None], raw: Sequence[str | None]) -> dict[str, list[Any]]:
        n = len(images)
        out: dict[str, list[Any]] = {c.name: [None] * n for c in C.CAPTION_COLUMNS}
        for kind in C.CAPTION_TYPES:
            out[f"caption_{kind}_status"] = [C.NOT_REQUESTED] * n
            out[f"caption_{kind}_checks"] = [[] for _ in range(n)]
        views: list[Image.Image | None] = []
        for i, data in enumerate(images):
            decoded = decode(data, view_short_side=self.cfg.ocr.max_side)
            if decoded.ok and decoded.rgb is not None:
                views.append(Image.fromarray(decoded.rgb))
                continue
            views.append(None)
            for kind in self.kinds:
                self._set(out, kind, i, None, C.ERROR, None, f"image not decodable: {decoded.broken_reason}")
        ocr = self._ocr(views, out)
        for kind in self.kinds:
            backend = self.cfg.backend_for(kind)
            live = [i for i in range(n) if views[i] is not None]
            if backend is None:
                for i in live:
                    self._set(out, kind, i, None, C.NOT_PRODUCED, None, not_produced_message(kind))
            elif backend == "ocr":
                self._from_ocr(out, kind, live, ocr, views)
            else:
                self._from_vlm(out, kind, live, views, self.backend(backend))
        for i in range(n):
            for kind in self.kinds:
                text = out[f"caption_{kind}"][i]
                if text is None:
                    continue
                flags, tokens = self.checks(
                    kind,
                    text,
                    check_language=TYPES[kind].check_language,
                    ocr_text=ocr[i].text
                    if ocr[i] is not None and TYPES[kind].compare_ocr and self.cfg.backend_for(kind) != "ocr"
                    else None,
                )
                out[f"caption_{kind}_checks"][i] = flags
                out[f"caption_{kind}_tokens"][i] = tokens
            general_ok = out["caption_general_status"][i] in (C.OK, C.REPAIRED)
            fused = fuse(raw[i], out["caption_general"][i] if general_ok else None)
            out["caption_fused"][i], out["caption_split"][i] = fused.caption, fused.split
        return out

    @staticmethod
    def _set(
        out: dict[str, list[Any]],
        kind: str,
        i: int,
        text: str | None,
        status: str,
        backend: str | None,
        error: str | None,
    ) -> None:
        out[f"caption_{kind}"][i] = text
        out[f"caption_{kind}_status"][i] = status
        out[f"caption_{kind}_backend"][i] = backend
        out[f"caption_{kind}_error"][i] = error

    def _ocr(self, views: list[Image.Image | None], out: dict[str, list[Any]]) -> list[OcrResult | None]:
        results: list[OcrResult | None] = [None] * len(views)
        if self.ocr is None:
            return results
        ocr = self.ocr

        def read(view: Image.Image) -> OcrResult | str:
            try:
                return ocr.read(view)
            except OcrError as exc:  # recorded on the row (status error), never dropped
                return str(exc)

        live = [i for i, view in enumerate(views) if view is not None]
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.ocr.threads)) as pool:
            answers = list(pool.map(read, [views[i] for i in live]))
        for i, res in zip(live, answers, strict=True):
            if isinstance(res, str):
                out["caption_text_error"][i] = res
                continue
            results[i] = res
            out["ocr_text"][i] = res.text
            out["ocr_lines"][i] = [line.as_row() for line in res.lines]
            out["ocr_script"][i], out["ocr_lang"][i] = res.script, res.lang
            out["ocr_tesseract_lang"][i] = res.tesseract_lang
        return results

    def _from_ocr(
        self,
        out: dict[str, list[Any]],
        kind: str,
        live: list[int],
        ocr: list[OcrResult | None],
        views: list[Image.Image | None],
    ) -> None:
        for i in live:
            res = ocr[i]
            if res is None:
                self._set(out, kind, i, None, C.ERROR, "ocr", out["caption_text_error"][i] or "OCR did not run")
                continue
            name = res.model
            if kind == "text":
                size = views[i].size  # type: ignore[union-attr]
                self._set(out, kind, i, describe_ocr(res, *size), C.OK, name, None)
            else:
                self._set(out, kind, i, dumps(from_ocr(out["ocr_lines"][i], res.script, res.lang)), C.OK, name, None)

    def _from_vlm(
        self,
        out: dict[str, list[Any]],
        kind: str,
        live: list[int],
        views: list[Image.Image | None],
        backend: VlmBackend,
    ) -> None:
        ctype = TYPES[kind]
        budget = self.cfg.generation.max_new_tokens.get(kind, 256)
        side = (
            self.cfg.transformers.max_image_side
            if backend.name.startswith("transformers")
            else self.cfg.openai.max_image_side
        )
        pngs = {i: bounded_png(views[i], side) for i in live}  # type: ignore[arg-type]
        replies = backend.generate([VlmRequest(pngs[i], ctype.prompt, budget) for i in live])
        repair: list[tuple[int, str, str]] = []
        for i, reply in zip(live, replies, strict=True):
            if reply.error is not None or reply.text is None:
                self._set(out, kind, i, None, C.ERROR, backend.name, reply.error or "no answer")
            elif not ctype.is_json:
                self._set(out, kind, i, reply.text, C.OK, backend.name, None)
            else:
                parsed = parse_structured(reply.text)
                if parsed.ok and parsed.value is not None:
                    self._set(out, kind, i, dumps(parsed.value), C.OK, backend.name, None)
                else:
                    repair.append((i, reply.text, parsed.error or "invalid"))
        if not repair:
            return
        second = backend.generate([VlmRequest(pngs[i], repair_prompt(prev, err), budget) for i, prev, err in repair])
        for (i, _prev, first_error), reply in zip(repair, second, strict=True):
            parsed = parse_structured(reply.text or "") if reply.error is None else None
            if parsed is not None and parsed.ok and parsed.value is not None:
                self._set(out, kind, i, dumps(parsed.value), C.REPAIRED, backend.name, None)
            else:
                why = reply.error or (parsed.error if parsed else "no answer")
                self._set(
                    out,
                    kind,
                    i,
                    None,
                    C.FAILED,
                    backend.name,
                    f"invalid structured output: {first_error}; after one repair: {why}",
                )


def _position(line_x: int, line_y: int, w: int, h: int, width: int, height: int) -> str:
    cx, cy = (line_x + w / 2) / max(1, width), (line_y + h / 2) / max(1, height)
    vertical = "top" if cy < 1 / 3 else "middle" if cy < 2 / 3 else "bottom"
    horizontal = "left" if cx < 1 / 3 else "center" if cx < 2 / 3 else "right"
    return f"{vertical} {horizontal}"


def describe_ocr(res: OcrResult, width: int | None = None, height: int | None = None) -> str:
    """Text caption from OCR: every line verbatim, in reading order, with position and size."""
    if not res.lines:
        return "No visible text."
    width = width or max(line.x + line.w for line in res.lines)
    height = height or max(line.y + line.h for line in res.lines)
    script = SCRIPT_NAMES.get(res.script or "", res.script or "unknown-script")
    head = f"{len(res.lines)} line{'s' if len(res.lines) > 1 else ''} of {script} text"
    head += f" ({res.lang})" if res.lang else ""
    parts = []
    for line in res.lines:
        rel = line.h / max(1, height)
        size = "large" if rel >= 0.12 else "medium" if rel >= 0.05 else "small"
        parts.append(f'"{line.text}" ({_position(line.x, line.y, line.w, line.h, width, height)}, {size}, {line.h}px)')
    return f"{head}, in reading order: " + "; ".join(parts)
