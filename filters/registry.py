"""The one place where filters are declared. The pipeline and `flywheel filters` read it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from filters.aesthetics import AestheticsScorer
from filters.base import EmbeddingScorer, ModelScorer, Scorer
from filters.broken import BrokenScorer
from filters.clip_score import ClipScorer
from filters.config import ScoringConfig, section_identity
from filters.dedup import DedupScorer
from filters.edit_pair import EditPairScorer
from filters.embedding import ImageEmbeddingScorer
from filters.entropy import EntropyScorer
from filters.faces import FacesScorer
from filters.image_quality import ImageQualityScorer
from filters.jpeg_quality import JpegQualityScorer
from filters.nsfw import NsfwScorer
from filters.quality_v1 import QualityV1Scorer
from filters.resolution import ResolutionScorer
from filters.rotation import RotationScorer
from filters.rotation_embed import RotationEmbedScorer
from filters.rotation_net import RotationNetScorer
from filters.text import TextScorer
from filters.token_length import TokenLengthScorer
from flywheel.errors import UserError
from flywheel.imaging import SCORING_VIEW
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
    JpegQualityScorer,
    ImageQualityScorer,
    QualityV1Scorer,
    FacesScorer,
    EditPairScorer,
    ImageEmbeddingScorer,
    RotationEmbedScorer,
    AestheticsScorer,
    TextScorer,
)
_BY_NAME = {cls.name: cls for cls in FILTERS}


class UnknownFilterError(UserError):
    pass


def filter_names() -> list[str]:
    return [cls.name for cls in FILTERS]


def resolve(names: Iterable[str] | None, include_optional: bool = False) -> list[type[Scorer]]:
    """Filter classes for `names` in registry order; the broken filter always runs.

    `None` means the default set (every filter with `default_on`), or every filter with `include_optional`.
    """
    if names is None:
        return [cls for cls in FILTERS if cls.default_on or include_optional]
    wanted = {n.strip() for n in names if n.strip()}
    unknown = wanted - set(_BY_NAME)
    if unknown:
        raise UnknownFilterError(f"unknown filter(s) {sorted(unknown)}; known: {filter_names()}")
    wanted.add(BrokenScorer.name)
    if any(issubclass(_BY_NAME[n], EmbeddingScorer) for n in wanted):
        wanted.add(ImageEmbeddingScorer.name)  # embedding filters read the shared pass: it runs with them
    return [cls for cls in FILTERS if cls.name in wanted]


def scoring_fingerprint(classes: Iterable[type[Scorer]], cfg: ScoringConfig) -> str:
    """Hash of what decides a pool shard's scores besides its input: the filter set and each filter's config.

    Stored in every pool shard's marker; a shard scored under another filter set or model config is not
    complete for this run and is scored again (its input fingerprint still has to match).
    """
    classes = list(classes)
    identity = {
        "filters": [cls.name for cls in classes],
        "limits": section_identity(cfg.limits),
        "config": {
            cls.name: section_identity(getattr(cfg, cls.config_section))
            for cls in classes
            if cls.config_section is not None
        },
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build(cls: type[Scorer], cfg: ScoringConfig) -> Scorer:
    factory = getattr(cls, "from_config", None)
    return factory(cfg) if factory is not None else cls()


def decode_short_side(cfg: ScoringConfig) -> int:
    """Shorter side of the one view a scoring run decodes: the largest any registered filter needs.

    It depends on the configuration only, never on which filters a run enables, so a scorer that reduces
    this view to its own size sees the same pixels in every run (deterministic columns).
    """
    return max([SCORING_VIEW] + [build(cls, cfg).view_short_side for cls in FILTERS])


def column_registry(classes: Iterable[type[Scorer]] = FILTERS) -> ColumnRegistry:
    registry = ColumnRegistry(CORE_COLUMNS)
    for cls in classes:
        for column in cls.columns:
            registry.add(column)
    return registry


def column_owners(classes: Iterable[type[Scorer]] = FILTERS) -> dict[str, str]:
    """Every score column a registered filter can write -> that filter (recipes check rules against it)."""
    return {c.name: cls.name for cls in classes for c in cls.columns}


def is_model(cls: type[Scorer]) -> bool:
    # An EmbeddingScorer holds a model head too: never run it as a CPU scorer inside the decode task.
    return issubclass(cls, ModelScorer | EmbeddingScorer)
