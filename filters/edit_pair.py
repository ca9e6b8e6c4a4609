"""Edit-pair checks for TI2I rows: did the edit change something, and is the rest of the source kept?

Stage 2 of the Qwen-Image-2.0 data table mixes edit triples (source image + instruction -> target image) into
pre-training. Two pixel failures make a triple useless: the target is the source again (identical, or only
re-encoded or resized: the edit did nothing), or the target is an unrelated image (nothing of the source is
kept, so the pair teaches generation, not editing). A third failure is in the text: the instruction is
missing or is not an instruction at all.

Pixels. The target's shared decoded view (`SampleBatch.decoded`) and the source bytes, decoded here with
`flywheel.imaging.decode` at the same view size and the same `DecodeLimits` (a bounded decode: a hostile
source is refused exactly like a hostile target), are both resized to one common GRID x GRID grid, whatever
their sizes and aspect ratios (an edit model may return another size). Then:

- `edit_ssim`: SSIM (Wang et al. 2004; Gaussian window sigma 1.5, K1 0.01, K2 0.03, 0-255 range) of the
  greyscale target against the greyscale source, averaged over the whole grid. About 1 for identical pairs,
  lower the more the edit changed, near 0 for unrelated images.
- `edit_changed_fraction`: fraction of the grid where the target differs from the source locally: either
  the largest per-channel absolute difference (colour, so a recolour that keeps the luma still counts),
  averaged over a 5 x 5 neighbourhood (so JPEG ringing and single-pixel noise do not count), is above
  CHANGE_LEVEL grey levels, or the SSIM map averaged over the same neighbourhood is below STRUCTURE_LEVEL
  (structure changed at about the same colour: a low-contrast background blurred or replaced, dark text on a
  dark surface). 0 for identical and re-encoded pairs; the share of the image an edit touched otherwise.
  Both levels were chosen on the tune pairs of bench/edit_pairs.py: re-encodes down to JPEG q40 stay at 0
  (with a colour level of 16 they reach 0.4% of the grid, with a structure level of 0.9 3.5%).
- `edit_outside_ssim`: mean of the same SSIM map over the grid outside the changed region, the region
  first dilated by DILATE px so that SSIM windows overlapping the edit's border do not count as "outside".
  It says whether the structure outside the edit is kept. When less than MIN_OUTSIDE of the grid is left
  outside (the whole image changed, as between two unrelated photos), no structure was kept: 0.

Instruction. `edit_instruction_issue` is null when the instruction looks usable, else the first of (in this
order): `missing` (null), `empty` (whitespace only), the generic defects of the caption check
(`filters.token_length.caption_issue`: `garbled`, `url_only`, `placeholder`, `repetitive`), `too_short`
(fewer than MIN_UNITS word units: a single word is not an instruction; "add snow" is), and
`not_an_instruction`: English text (ASCII letters and at least one English function word) or Chinese
text that contains none of the edit cues of EDIT_WORDS / EDIT_CUES_ZH (add, remove, replace, change, make,
turn, ..., 添加, 删除, 把, 换成, ...). That catches a caption pasted where the instruction belongs ("a dog
on the beach"); it is a word list, not a model, so it cannot tell whether the instruction matches the edit,
and text in other languages or scripts is never judged `not_an_instruction`.

Every column is null for T2I rows. The pixel columns are null for TI2I rows whose target or source does not
decode (the recipe rejects those rows through `edit_source_decodes`); the instruction column is computed
for every TI2I row. Thresholds live in the recipe (`stage2_256p_edit`), tuned and reported on constructed
pairs of real photos in bench/edit_pairs.py and docs/edit_pairs.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from PIL import Image
from scipy import ndimage

from filters.base import CpuScorer, SampleBatch
from filters.config import ScoringConfig
from filters.token_length import MISSING, caption_issue, caption_units
from flywheel.imaging import DecodeLimits, decode
from flywheel.schema import Column

TI2I = "TI2I"
GRID = 128  # side of the common grid both images are resized to
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
DIFF_WINDOW = 5  # neighbourhood (px on the grid) the colour difference is averaged over
CHANGE_LEVEL = 24.0  # grey levels of local colour difference that count as changed
STRUCTURE_LEVEL = 0.7  # local SSIM below this counts as changed too (0.8 still keeps re-encodes at 0; 0.9 not)
DILATE = 4  # px the changed region grows by before "outside" is measured (about the SSIM window radius)
MIN_OUTSIDE = 0.05  # below this share of the grid left unchanged, nothing outside the edit was kept

EMPTY = "empty"
TOO_SHORT = "too_short"
NOT_AN_INSTRUCTION = "not_an_instruction"
MIN_UNITS = 2
# caption_issue labels that apply to an instruction as they do to a caption (its too_short needs 3 units,
# which would reject two-word instructions such as "add snow"; this check counts its own).
_GENERIC_ISSUES = frozenset({"empty", "garbled", "url_only", "placeholder", "repetitive"})

# English edit cues: imperative edit verbs, and words that phrase an edit as a wish ("the sky should be red",
# "a hat instead of the cap"). Matching is on whole lower-cased words.
EDIT_WORDS = frozenset(
    [
        "add",
        "adds",
        "adding",
        "append",
        "apply",
        "attach",
        "blur",
        "brighten",
        "change",
        "changes",
        "colour",
        "color",
        "colorize",
        "colourise",
        "convert",
        "crop",
        "darken",
        "delete",
        "desaturate",
        "draw",
        "edit",
        "enhance",
        "enlarge",
        "erase",
        "extend",
        "fill",
        "fix",
        "flip",
        "give",
        "increase",
        "decrease",
        "insert",
        "instead",
        "into",
        "let",
        "make",
        "modify",
        "move",
        "paint",
        "place",
        "put",
        "recolor",
        "recolour",
        "relight",
        "remove",
        "render",
        "repaint",
        "replace",
        "reposition",
        "resize",
        "restore",
        "retouch",
        "rotate",
        "saturate",
        "set",
        "shift",
        "should",
        "shrink",
        "show",
        "swap",
        "transform",
        "turn",
        "update",
        "use",
        "wear",
        "write",
        "zoom",
    ]
)
# Chinese edit cues (substrings): add, delete/remove, replace, change into, make, the 把/将 construction.
EDIT_CUES_ZH = (
    "添加",
    "加上",
    "增加",
    "加入",
    "删除",
    "删掉",
    "去掉",
    "去除",
    "移除",
    "替换",
    "换成",
    "改成",
    "改为",
    "变成",
    "变为",
    "修改",
    "调整",
    "把",
    "将",
    "让",
    "使",
    "给",
    "换",
    "改",
    "去",
)
# English function words: Latin-script text is judged only when it has one of them (so it reads as English;
# "Mach den Himmel blau" is not judged, since the edit-verb list is English only).
ENGLISH_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "at",
        "with",
        "and",
        "to",
        "from",
        "is",
        "are",
        "by",
        "over",
        "under",
        "near",
        "next",
        "this",
        "that",
        "its",
        "their",
        "his",
        "her",
    ]
)
_LATIN_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")
_HAN_RE = re.compile(r"[\u4e00-\u9fff]")


def _gray(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def to_grid(rgb: np.ndarray, side: int = GRID) -> np.ndarray:
    """RGB resized to side x side (aspect not kept: target and source must land on the same cells)."""
    if rgb.shape[0] == side and rgb.shape[1] == side:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BILINEAR))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two greyscale float images on the 0-255 scale (Gaussian window, sigma 1.5)."""
    mu_a = ndimage.gaussian_filter(a, SSIM_SIGMA)
    mu_b = ndimage.gaussian_filter(b, SSIM_SIGMA)
    var_a = ndimage.gaussian_filter(a * a, SSIM_SIGMA) - mu_a * mu_a
    var_b = ndimage.gaussian_filter(b * b, SSIM_SIGMA) - mu_b * mu_b
    cov = ndimage.gaussian_filter(a * b, SSIM_SIGMA) - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return num / den


def changed_mask(target: np.ndarray, source: np.ndarray, smap: np.ndarray) -> np.ndarray:
    """True where, averaged over DIFF_WINDOW, the largest channel difference exceeds CHANGE_LEVEL or the
    SSIM map `smap` falls below STRUCTURE_LEVEL."""
    diff = np.abs(target.astype(np.float32) - source.astype(np.float32)).max(axis=-1)
    colour = ndimage.uniform_filter(diff, DIFF_WINDOW, mode="reflect") > CHANGE_LEVEL
    return colour | (ndimage.uniform_filter(smap, DIFF_WINDOW, mode="reflect") < STRUCTURE_LEVEL)


def edit_metrics(target_rgb: np.ndarray, source_rgb: np.ndarray) -> tuple[float, float, float]:
    """(edit_ssim, edit_changed_fraction, edit_outside_ssim) of two decoded RGB views (any sizes)."""
    target, source = to_grid(target_rgb), to_grid(source_rgb)
    smap = ssim_map(_gray(target), _gray(source))
    changed = changed_mask(target, source, smap)
    outside = ~ndimage.binary_dilation(changed, iterations=DILATE) if changed.any() else ~changed
    share = float(outside.mean())
    outside_ssim = float(smap[outside].mean()) if share >= MIN_OUTSIDE else 0.0
    return float(smap.mean()), float(changed.mean()), outside_ssim


def instruction_issue(text: str | None) -> str | None:
    """The first defect of an edit instruction in the documented order, or None when it looks usable."""
    if text is None:
        return MISSING
    generic = caption_issue(text)
    if generic in _GENERIC_ISSUES:
        return EMPTY if generic == "empty" else generic
    if len(caption_units(text)) < MIN_UNITS:
        return TOO_SHORT
    lowered = text.lower()
    if _HAN_RE.search(text):
        return None if any(cue in text for cue in EDIT_CUES_ZH) else NOT_AN_INSTRUCTION
    words = _LATIN_WORD_RE.findall(lowered)
    english = all(ch.isascii() for ch in lowered if ch.isalpha()) and ENGLISH_WORDS.intersection(words)
    if english and not EDIT_WORDS.intersection(words):
        return NOT_AN_INSTRUCTION
    return None  # an instruction, or another script or language: not judged


class EditPairScorer(CpuScorer):
    """SSIM, changed area and kept structure of each TI2I pair, plus an instruction-defect label."""

    name: ClassVar[str] = "edit_pair"
    view_short_side: ClassVar[int] = GRID
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "edit_ssim",
            pa.float32(),
            "SSIM",
            f"TI2I: SSIM of the greyscale target vs source on a common {GRID}x{GRID} grid (1 identical, ~0 "
            "unrelated); null for T2I and when target or source does not decode.",
            owner="edit_pair",
        ),
        Column(
            "edit_changed_fraction",
            pa.float32(),
            "fraction",
            f"TI2I: share of the grid whose {DIFF_WINDOW}x{DIFF_WINDOW}-averaged colour difference exceeds "
            f"{CHANGE_LEVEL:g} levels or SSIM is below {STRUCTURE_LEVEL:g} (0: the edit changed nothing); null "
            "for T2I and undecodable pairs.",
            owner="edit_pair",
        ),
        Column(
            "edit_outside_ssim",
            pa.float32(),
            "SSIM",
            "TI2I: mean SSIM outside the (dilated) changed region, 0 when under "
            f"{MIN_OUTSIDE:.0%} of the grid is unchanged (low: unrelated pair); null for T2I and undecodable "
            "pairs.",
            owner="edit_pair",
        ),
        Column(
            "edit_instruction_issue",
            pa.string(),
            "",
            "TI2I: first instruction defect: missing, empty, garbled, url_only, placeholder, repetitive, "
            "too_short (< 2 words), not_an_instruction (English/Chinese text without an edit cue); null when "
            "none and for T2I.",
            owner="edit_pair",
            from_caption=True,
        ),
    )

    def __init__(self, limits: DecodeLimits | None = None) -> None:
        super().__init__()
        self.limits = limits or DecodeLimits()

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> EditPairScorer:
        return cls(limits=cfg.limits)

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        out: dict[str, list[Any]] = {c.name: [None] * len(batch) for c in self.columns}
        tasks = batch.tasks or [None] * len(batch)
        sources = batch.source_images or [None] * len(batch)
        for i, (task, target, source) in enumerate(zip(tasks, batch.decoded, sources, strict=True)):
            if task != TI2I:
                continue
            out["edit_instruction_issue"][i] = instruction_issue(batch.captions[i])
            if not target.ok or target.rgb is None or source is None:
                continue
            src = decode(source, batch.view_short_side, self.limits)
            if not src.ok or src.rgb is None:
                continue
            ssim, changed, outside = edit_metrics(target.rgb, src.rgb)
            out["edit_ssim"][i] = ssim
            out["edit_changed_fraction"][i] = changed
            out["edit_outside_ssim"][i] = outside
        return out
