"""The one place where filters are declared. The pipeline and `flywheel filters` read it."""

from __future__ import annotations

from collections.abc import Iterable

from filters.base import ModelScorer, Scorer
from filters.broken import BrokenScorer
from filters.clip_score import ClipScorer
from filters.config import ScoringConfig
from filters.dedup import DedupScorer
from filters.entropy import EntropyScorer
from filters.nsfw import NsfwScorer
from filters.resolution import ResolutionScorer
from filters.rotation import RotationScorer
from filters.rotation_net import RotationNetScorer
from filters.token_length import TokenLengthScorer
from flywheel.errors import UserError
from flywheel.schema import CORE_COLUMNS, ColumnRegistry

# Stage-1 order of the Qwen-Image-2.0 report: broken, resolution, dedup, NSFW, rotation (EXIF + sky prior,
# then the CNN detector), entropy, CLIP, token length.
FILTERS: tuple[type[Scorer], ...] = (
    BrokenScorer,
    ResolutionScorer,
    DedupScorer,
    NsfwScorer,
    RotationScorer,
    RotationNetScorer,
    EntropyScorer,
    ClipScorer,
    TokenLengthScorer,
)
_BY_NAME = {cls.name: cls for cls in FILTERS}


class UnknownFilterError(UserError):
    pass


def filter_names() -> list[str]:
    return [cls.name for cls in FILTERS]


def resolve(names: Iterable[str] | None) -> list[type[Scorer]]:
    """Filter classes for `names` (all when None), in registry order; the broken filter always runs."""
    if names is None:
        return list(FILTERS)
    wanted = {n.strip() for n in names if n.strip()}
    unknown = wanted - set(_BY_NAME)
    if unknown:
        raise UnknownFilterError(f"unknown filter(s) {sorted(unknown)}; known: {filter_names()}")
    wanted.add(BrokenScorer.name)
    return [cls for cls in FILTERS if cls.name in wanted]


def build(cls: type[Scorer], cfg: ScoringConfig) -> Scorer:
    factory = getattr(cls, "from_config", None)
    return factory(cfg) if factory is not None else cls()


def column_registry(classes: Iterable[type[Scorer]] = FILTERS) -> ColumnRegistry:
    registry = ColumnRegistry(CORE_COLUMNS)
    for cls in classes:
        for column in cls.columns:
            registry.add(column)
    return registry


def is_model(cls: type[Scorer]) -> bool:
    return issubclass(cls, ModelScorer)
