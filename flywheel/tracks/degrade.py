"""Degrading a detailed caption into a colloquial user prompt, recording the inverse edits as a trace.

The Qwen-Image-2.0 prompt enhancer is trained on pairs built "in reverse": fine-grained annotations are
atomically degraded into the vague, casual prompts users type, and the inverse of each degradation is the
reasoning the enhancer must learn (which detail to restore, which style to state). Each operation here is
one such atomic step; the trace lists the inverse steps in the order an enhancer would apply them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

STYLE_PREFIXES = (
    "a close-up photo of ",
    "a portrait photo of ",
    "a cropped photo of ",
    "a grayscale photo of ",
    "a black and white photo of ",
    "a photo of ",
    "a telescope image of ",
    "an image of ",
    "a picture of ",
    "a rendering of ",
)
DETAIL_WORDS = (
    "orange",
    "red",
    "white",
    "black",
    "blue",
    "green",
    "ginger",
    "tabby",
    "striped",
    "smiling",
    "wooden",
    "tall",
    "dark",
    "long",
    "antique",
    "ancient",
    "distant",
    "tiny",
    "colourful",
    "grayscale",
    "engraved",
    "bright",
    "small",
    "large",
    "old",
    "young",
    "golden",
    "shiny",
)
COUNT_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several", "many")
PHRASE = re.compile(
    r"\s*(,\s*)?\b(with|on|in front of|next to|under|between|at|under a|in|wearing|looking at)\b[^,]*$", re.I
)
COLLOQUIAL = (
    "can you make {x}?",
    "i want {x} pls",
    "draw {x}",
    "{x}, something like that",
    "make me {x}",
    "need a pic of {x}",
)


@dataclass
class Degraded:
    user_prompt: str
    target_prompt: str
    ops: list[str] = field(default_factory=list)
    trace: list[dict[str, str]] = field(default_factory=list)  # inverse edits, in the order to apply them


def _article(text: str) -> str:
    return re.sub(r"^(a|an|the)\s+", "", text.strip(), flags=re.I)


def degrade(caption: str, seed: int) -> Degraded:
    """Rule-based degradation: style simplification, detail removal, count underspecification,
    phrase dropping and colloquialisation; each applied step adds its inverse to the trace."""
    rng = random.Random(seed)
    text = " ".join(caption.split())
    out = Degraded(user_prompt="", target_prompt=text)
    inverse: list[dict[str, str]] = []
    low = text.lower()
    for prefix in STYLE_PREFIXES:
        if low.startswith(prefix):
            text = text[len(prefix) :]
            out.ops.append("stylistic_simplification")
            inverse.append(
                {
                    "op": "state_style",
                    "restore": prefix.strip(),
                    "why": "the user did not say what kind of image; the caption names the medium",
                }
            )
            break
    m = PHRASE.search(text)
    if m and rng.random() < 0.8 and len(text[: m.start()].split()) >= 2:
        removed = text[m.start() :].strip(" ,")
        text = text[: m.start()]
        out.ops.append("detail_removal")
        inverse.append(
            {
                "op": "restore_detail",
                "restore": removed,
                "why": "the setting/relation was left out; the enhancer adds it back",
            }
        )
    words = text.split()
    dropped = [w for w in words if w.lower().strip(",") in DETAIL_WORDS]
    if dropped:
        keep = set(rng.sample(dropped, k=max(0, len(dropped) - rng.randint(1, len(dropped)))))
        gone = [w for w in dropped if w not in keep]
        words = [w for w in words if w in keep or w not in gone]
        text = " ".join(words)
        out.ops.append("attribute_underspecification")
        inverse.append(
            {
                "op": "restore_attributes",
                "restore": " ".join(gone),
                "why": "colours/materials/attributes were dropped; the enhancer specifies them",
            }
        )
    for count in COUNT_WORDS:
        pattern = re.compile(rf"\b{count}\b", re.I)
        if pattern.search(text):
            text = pattern.sub("some", text, count=1)
            out.ops.append("count_underspecification")
            inverse.append({"op": "restore_count", "restore": count, "why": "'some' replaced an exact count"})
            break
    core = _article(text).rstrip(" ,.") or _article(caption)
    template = rng.choice(COLLOQUIAL)
    out.user_prompt = template.format(x=core.lower() if rng.random() < 0.7 else core)
    out.ops.append("colloquialisation")
    inverse.append(
        {
            "op": "formalise",
            "restore": "declarative caption",
            "why": "casual request phrasing becomes a descriptive prompt",
        }
    )
    out.trace = list(reversed(inverse))
    return out
