"""Intent-preserving prompt expansion: a colloquial prompt becomes a detailed one that says the same thing.

Why not the nearest curated caption: it describes some other image. "three coffee cups, no saucers" has the
caption "a coffee cup and saucer" as its neighbour, and training an enhancer on that pair teaches it to drop
counts and negations, the very instructions the model misread. Here the rewrite keeps the prompt's content
verbatim (minus request phrasing such as "can you make ... pls") and only adds: a medium ("a photo of"), detail
phrases retrieved from related captions that do not touch what the prompt constrains, and rendering detail.
`intent_violations` checks the result (counts, negations, quoted text, content words); a detail that would
violate it is dropped, so a rewrite never contradicts its prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from flywheel.tracks.degrade import PHRASE, STYLE_PREFIXES

_REQUEST = [
    re.compile(p, re.I)
    for p in (
        r"^\s*(please\s+)?(can|could|would) you\s+(please\s+)?(make|draw|generate|create|render|show)( me)?\s+",
        r"^\s*i\s+(want|need|would like)\s+(to see\s+)?",
        r"^\s*(please\s+)?(make|draw|generate|create|render|show)( me)?\s+",
        r"^\s*need\s+(a\s+)?(pic|picture|image|photo)\s+of\s+",
        r"^\s*(a\s+)?(pic|picture|image)\s+of\s+",
    )
]
_TAIL = re.compile(r"(\s*,?\s*(pls|please|thanks|thx|something like that|or something|lol)\s*)+[?!.]*\s*$", re.I)
_NUMBER = (
    r"\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|several|many|a pair of|pair of|both"
)
COUNT_RE = re.compile(rf"\b({_NUMBER})\b", re.I)
NEGATION_RE = re.compile(r"\b(no|not|without|never|none|nothing|zero)\b", re.I)
_NEGATION_SCOPE_END = frozenset(
    ("and", "or", "but", "with", "no", "not", "without", "never", "none", "nothing", "zero")
)
QUOTED_RE = re.compile(r"\"[^\"]+\"|“[^”]+”|'[^']{2,}'|「[^」]+」")
_WORD = re.compile(r"[a-z][a-z-]+", re.I)
_STOP = "a an the of and or in on at to with for from by is are be it its this that some any me my your very"
STOPWORDS = frozenset(_STOP.split(" "))
RENDER_DETAIL = "sharp focus, balanced natural lighting, high detail"


def _stem(word: str) -> str:
    w = word.lower()
    for suffix in ("ies", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return w


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(QUOTED_RE.sub(" ", text)) if w.lower() not in STOPWORDS}


def core_of(prompt: str) -> str:
    """The prompt without request phrasing ("can you make", "pls", "something like that")."""
    text = " ".join(prompt.split())
    for pattern in _REQUEST:
        text = pattern.sub("", text, count=1)
    text = _TAIL.sub("", text).strip(" ,.?!")
    return text or " ".join(prompt.split()).strip(" ,.?!")


def negated_terms(text: str) -> set[str]:
    """Stems the prompt negates ("no saucers" -> {"saucer"}; "without a hat" -> {"hat"})."""
    return {_stem(w) for _, _, words in _negation_scopes(text) for w in words}


def _negation_scopes(text: str) -> list[tuple[int, int, list[str]]]:
    """(start, end, content words) of each negation: up to two content words after it, ending at punctuation
    or a conjunction ("without windows and no people" -> [windows], [people])."""
    out = []
    clean = QUOTED_RE.sub(lambda m: " " * len(m.group(0)), text)
    for m in NEGATION_RE.finditer(clean):
        end, words = m.end(), []
        for w in _WORD.finditer(clean, m.end()):
            between = clean[end : w.start()]
            if re.search(r"[,.;:!?]", between) or w.group(0).lower() in _NEGATION_SCOPE_END or len(words) == 2:
                break
            if w.group(0).lower() not in STOPWORDS:
                words.append(w.group(0))
            end = w.end()
        out.append((m.start(), end, words))
    return out


def positive_words(text: str) -> set[str]:
    """Content words of `text` outside quoted text and negation scopes: what it asks to be shown."""
    spans = _negation_scopes(text)
    kept, last = [], 0
    for start, end, _ in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return content_words(" ".join(kept))


def _counts(text: str) -> list[str]:
    return [m.group(1).lower() for m in COUNT_RE.finditer(QUOTED_RE.sub(" ", text))]


def intent_violations(prompt: str, rewrite: str) -> list[str]:
    """Why `rewrite` does not keep `prompt`'s intent (empty when it does)."""
    out: list[str] = []
    core = core_of(prompt)
    for q in QUOTED_RE.findall(core):
        if q not in rewrite:
            out.append(f"quoted text {q} is not kept verbatim")
    want, got = _counts(core), _counts(rewrite)
    for c in set(want):
        if got.count(c) < want.count(c):
            out.append(f"count {c!r} is lost")
    extra = sorted(set(got) - set(want) - {"one"} if want else set(got) - {"one"})
    if extra:
        out.append(f"new counts {extra} not in the prompt")
    negated = negated_terms(core)
    kept_negated = negated_terms(rewrite)
    for term in sorted(negated - kept_negated):
        out.append(f"negation of {term!r} is lost")
    positive = positive_words(rewrite)
    for term in sorted(negated & positive):
        out.append(f"{term!r} is negated in the prompt but asked for in the rewrite")
    missing = content_words(core) - content_words(rewrite)
    if missing:
        out.append(f"content words {sorted(missing)} are dropped")
    return out


def detail_phrases(captions: Iterable[str]) -> list[str]:
    """Candidate detail phrases of related captions: their setting/relation phrase ("on a wooden table").

    Loose attribute words are not taken: which noun "red" belongs to is not known, so it could recolour one."""
    out: list[str] = []
    for caption in captions:
        for segment in " ".join(caption.split()).split(","):  # rewrites hold several comma-separated details
            m = PHRASE.search(segment)
            if m:
                out.append(segment[m.start() :].strip(" ,."))
    seen: set[str] = set()
    return [p for p in out if p and not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def _medium(core: str) -> str:
    low = core.lower()
    if any(low.startswith(p) for p in STYLE_PREFIXES):
        return ""
    if QUOTED_RE.search(core) or re.search(r"\b(sign|poster|word|text|letters|menu|label|logo)\b", low):
        return "a clear, legible image of "
    return "a photo of "


def _allowed(phrase: str, prompt_core: str) -> bool:
    """A detail may not add counts, negations or quoted text, nor mention anything the prompt names or
    negates (a second description of a named thing could contradict it: "with white letters" for a sign the
    prompt wants in black letters)."""
    if COUNT_RE.search(phrase) or NEGATION_RE.search(phrase) or QUOTED_RE.search(phrase):
        return False
    words = content_words(phrase)
    return bool(words) and not (words & (content_words(prompt_core) | negated_terms(prompt_core)))


def expand_prompt(prompt: str, details: Sequence[str] = (), *, max_details: int = 2) -> str:
    """A detailed prompt that keeps `prompt`'s content verbatim and adds non-conflicting detail."""
    core = core_of(prompt)
    medium = _medium(core)
    base = f"{medium}{core}" if medium else core
    picked: list[str] = []
    for phrase in details:
        if len(picked) >= max_details:
            break
        if not _allowed(phrase, core):
            continue
        candidate = ", ".join([base, *picked, phrase, RENDER_DETAIL])
        if not intent_violations(prompt, candidate):
            picked.append(phrase)
    rewrite = ", ".join([base, *picked, RENDER_DETAIL])
    rewrite = rewrite[0].upper() + rewrite[1:]
    if intent_violations(prompt, rewrite):  # cannot happen with the bare template; kept as a guard
        rewrite = core
    return rewrite
