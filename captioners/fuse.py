"""Fused captions: the recaption's visual detail plus the facts only the raw caption knows.

Alt-text and web captions (raw) carry facts no VLM can see: names, places, dates, quoted
titles. Recaptions carry visual detail raw captions lack. Qwen-Image keeps raw, recaption
and fused splits; the fusion here is deterministic and auditable: facts are extracted from
the raw caption (quoted strings, capitalised name phrases, numbers with units), those the
recaption already states are dropped, and the rest are appended as one clause naming them.
A fact is therefore never lost and never invented.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_QUOTED = re.compile(r'"([^"]{1,200})"|“([^”]{1,200})”|「([^」]{1,200})」')
# A run of capitalised words (allowing "of", "de", "van", ... inside), e.g. "Golden Gate Bridge", "Musée d'Orsay".
_NAME = re.compile(r"\b([A-Z][\w'’-]+(?:\s+(?:of|de|la|le|van|von|der|du|d'|the|and|&)?\s*[A-Z][\w'’-]+)*)")
_NUMBER = re.compile(r"\b\d[\d,.:/-]*(?:\s?(?:%|km|m|cm|kg|AD|BC|BCE|CE))?\b")
_STOP = frozenset(
    {
        "A",
        "An",
        "The",
        "This",
        "That",
        "These",
        "Those",
        "It",
        "In",
        "On",
        "At",
        "Of",
        "With",
        "And",
        "Photo",
        "Image",
        "Picture",
        "View",
        "Close",
        "Stock",
    }
)


@dataclass(frozen=True)
class Fused:
    caption: str | None
    split: str | None  # raw | recaption | fused
    kept_facts: tuple[str, ...] = ()


def raw_facts(raw: str) -> list[str]:
    """Facts of `raw` that a recaption must not lose, in order of appearance, without repeats."""
    facts: list[str] = []
    for match in _QUOTED.finditer(raw):
        facts.append(next(g for g in match.groups() if g))
    unquoted = _QUOTED.sub(" ", raw)
    for sentence in re.split(r"(?<=[.!?])\s+", unquoted):
        for i, match in enumerate(_NAME.finditer(sentence)):
            name = match.group(1)
            words = name.split()
            # A sentence-initial single capitalised word is usually just the first word, not a name.
            if (i == 0 and match.start() == 0 and len(words) == 1) or name in _STOP:
                continue
            while words and words[0] in _STOP:
                words = words[1:]
            if words:
                facts.append(" ".join(words))
    facts.extend(m.group(0) for m in _NUMBER.finditer(unquoted))
    return list(dict.fromkeys(f.strip() for f in facts if f.strip()))


def _mentions(text: str, fact: str) -> bool:
    return fact.casefold() in text.casefold()


def fuse(raw: str | None, recaption: str | None) -> Fused:
    raw = (raw or "").strip()
    recaption = (recaption or "").strip()
    if not recaption:
        return Fused(raw or None, "raw" if raw else None)
    if not raw:
        return Fused(recaption, "recaption")
    missing = [f for f in raw_facts(raw) if not _mentions(recaption, f)]
    if not missing:
        return Fused(recaption, "fused")
    quoted = [f'"{f}"' if _QUOTED.search(f'"{f}"') and f in raw and f'"{f}"' in raw else f for f in missing]
    clause = "; ".join(quoted)
    body = recaption if recaption.endswith((".", "!", "?", "。")) else recaption + "."
    return Fused(f"{body} Per the source caption: {clause}.", "fused", tuple(missing))
