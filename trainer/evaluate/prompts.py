"""Evaluation prompt sets (YAML under `trainer/eval_prompts/`, or a user's own file).

Why validate labels and categories at load time: a typo in an expected ImageNet label would otherwise score
every output as `object_missing`, a failure of the prompt set dressed up as a failure of the model.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from flywheel.config import ConfigError, build, load_yaml, named_yaml

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "eval_prompts"
CATEGORIES = ("text", "object", "scene", "edit")
_COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
}


@dataclass(frozen=True)
class SourceSpec:
    """An edit's source image, drawn deterministically (so the prompt set needs no image files)."""

    shape: str = "circle"
    color: str = "red"
    background: str = "white"

    def render(self, size: tuple[int, int]) -> Image.Image:
        w, h = size
        image = Image.new("RGB", size, _COLORS[self.background])
        draw = ImageDraw.Draw(image)
        box = (w * 0.2, h * 0.2, w * 0.8, h * 0.8)
        if self.shape == "circle":
            draw.ellipse(box, fill=_COLORS[self.color])
        elif self.shape == "square":
            draw.rectangle(box, fill=_COLORS[self.color])
        else:
            draw.polygon([(w * 0.5, h * 0.15), (w * 0.85, h * 0.85), (w * 0.15, h * 0.85)], fill=_COLORS[self.color])
        return image


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    category: str
    prompt: str
    task: str = "T2I"
    expected_text: str | None = None
    expected_label: str | None = None
    source: SourceSpec | None = None


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: list[EvalPrompt]


def _check(p: EvalPrompt, where: str, classes: tuple[str, ...]) -> None:
    if p.category not in CATEGORIES:
        raise ConfigError(f"{where}: category must be one of {CATEGORIES}, got {p.category!r}")
    if p.task not in ("T2I", "TI2I"):
        raise ConfigError(f"{where}: task must be T2I or TI2I")
    if (p.task == "TI2I") != (p.source is not None):
        raise ConfigError(f"{where}: TI2I prompts need a `source` and T2I prompts must not have one")
    if p.source is not None:
        if p.source.shape not in ("circle", "square", "triangle"):
            raise ConfigError(f"{where}: source.shape must be circle, square or triangle")
        for c in (p.source.color, p.source.background):
            if c not in _COLORS:
                raise ConfigError(f"{where}: unknown colour {c!r}; known: {sorted(_COLORS)}")
    if p.category == "text" and not p.expected_text:
        raise ConfigError(f"{where}: text prompts need expected_text")
    if p.category == "object" and p.expected_label not in classes:
        near = difflib.get_close_matches(str(p.expected_label), classes, n=3)
        raise ConfigError(
            f"{where}: expected_label {p.expected_label!r} is not an ImageNet class "
            f"(EfficientNet-Lite0 label); close: {near}"
        )


def load_prompt_set(name_or_path: str | Path) -> PromptSet:
    from flywheel.models.efficientnet_lite import IMAGENET_CLASSES

    path = named_yaml(name_or_path, PROMPTS_DIR, "prompt set")
    data = load_yaml(path)
    unknown = set(data) - {"name", "prompts"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; known: name, prompts")
    prompts = []
    for i, item in enumerate(data.get("prompts") or []):
        where = f"{path}: prompts[{i}]"
        p = build(EvalPrompt, item, where)
        _check(p, where, IMAGENET_CLASSES)
        prompts.append(p)
    ids = [p.id for p in prompts]
    if not prompts or len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: needs at least one prompt, with unique ids")
    return PromptSet(name=str(data.get("name", path.stem)), prompts=prompts)
