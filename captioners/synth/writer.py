"""Write synthetic renders as a folder source: `NNNNNN.png` + `NNNNNN.json` sidecars `flywheel score` ingests.

The sidecar's "caption" is the exact-text caption; "synth" (kind, layout, script, lang, lines,
font, font_px) lands in the pool's `meta` column through the folder source, so OCR and
caption checks can be scored against ground truth later. Sidecars are written atomically
after their image, so an interrupted run leaves no image without its truth.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captioners.synth.corpus import SCRIPTS, fonts_for
from captioners.synth.render import KINDS, SynthError, render
from flywheel.store.shards import write_json_atomic


@dataclass
class SynthReport:
    written: int = 0
    seconds: float = 0.0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


def write_synth(
    out: str | Path, n: int, *, kinds: tuple[str, ...] = KINDS, scripts: tuple[str, ...] | None = None, seed: int = 0
) -> SynthReport:
    started = time.perf_counter()
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise SynthError(f"unknown kind(s) {bad}; known: {', '.join(KINDS)}")
    if n < 1:
        raise SynthError("--n must be at least 1")
    report = SynthReport()
    wanted = scripts or tuple(SCRIPTS)
    unknown = [s for s in wanted if s not in SCRIPTS]
    if unknown:
        raise SynthError(f"unknown script(s) {unknown}; known: {', '.join(SCRIPTS)}")
    usable = [s for s in wanted if fonts_for(SCRIPTS[s])]
    for s in wanted:
        if s not in usable:
            report.warnings.append(f"no Noto font for {s}: skipped (install fonts-noto-core / fonts-noto-cjk)")
    if not usable:
        raise SynthError("no requested script has a font installed")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        kind, script = kinds[i % len(kinds)], usable[(i // len(kinds)) % len(usable)]
        sample = render(kind, script, rng)
        stem = root / f"synth_{seed}_{i:06d}"
        sample.image.save(stem.with_suffix(".png"), format="PNG")
        write_json_atomic(
            stem.with_suffix(".json"),
            {
                "caption": sample.caption,
                "synth": {
                    "kind": sample.kind,
                    "layout": sample.layout,
                    "script": sample.script,
                    "lang": sample.lang,
                    "lines": list(sample.lines),
                    "font": sample.font,
                    "font_px": sample.font_px,
                },
            },
        )
        report.written += 1
        report.counts[(kind, script)] += 1
    report.seconds = time.perf_counter() - started
    return report
