"""The scorer contract: one class per filter family, one method to implement.

A scorer adds typed columns to a batch of decoded samples. The pipeline decodes each
image once (see `flywheel.imaging`) and hands every scorer the same `SampleBatch`, so
scorers never touch raw bytes unless they need them (exact hashing, header facts).

Two kinds exist because they run differently on Ray:
- `CpuScorer`: cheap, stateless per batch; runs inside the decode task.
- `ModelScorer`: holds a model; `prepare` runs in the decode task and returns a small fixed
  array per sample, `score` runs in an actor pool (on a GPU when one is present).

Counters come for free: `Scorer.__call__` times each call and counts rows and nulls,
in the spirit of datatrove's pipeline steps.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from flywheel.errors import UserError
from flywheel.imaging import SCORING_VIEW, Decoded
from flywheel.schema import Column


@dataclass
class SampleBatch:
    """A batch of samples as scorers see them: bytes, captions and one decoded view each."""

    ids: list[str]
    images: list[bytes | None]
    captions: list[str | None]
    decoded: list[Decoded]
    uris: list[str] = field(default_factory=list)
    # Edit pairs: each row's task and TI2I source bytes (empty lists: every row is T2I). Scorers that compare
    # the source with the target (filters/edit_pair.py) decode it themselves at `view_short_side`, the view
    # size the targets in `decoded` were decoded at, so both images went through the same bounded decode.
    tasks: list[str | None] = field(default_factory=list)
    source_images: list[bytes | None] = field(default_factory=list)
    view_short_side: int = SCORING_VIEW

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Counters:
    """Per-scorer counters, merged across batches and reported at the end of a run."""

    rows: int = 0
    nulls: int = 0
    seconds: float = 0.0
    calls: int = 0

    def merge(self, other: Counters) -> None:
        self.rows += other.rows
        self.nulls += other.nulls
        self.seconds += other.seconds
        self.calls += other.calls


class ScorerUnavailable(UserError):
    """Raised when a scorer cannot run as configured (missing weights); the message says what to set."""


class ModelConfigError(UserError):
    """An enabled filter's configured model cannot load (missing or invalid file): a user error, exit 2.

    Scoring refuses to start instead of writing the filter's columns as null: finished shards are skipped
    on a re-run, so a null safety column would stay null in that workspace for good.
    """


class Scorer(ABC):
    """Base of all scorers. Subclasses declare `name` and `columns` once."""

    name: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]]
    # Shorter side (px) of the decoded view this scorer needs; 0 means header/bytes only.
    view_short_side: ClassVar[int] = 0
    # False for the high-resolution stages' costly scorers (BRISQUE, v1 quality): a plain `flywheel score`
    # stays stage-1 fast, and `score-missing --filters NAME` adds their columns when a recipe needs them.
    default_on: ClassVar[bool] = True
    # Section of ScoringConfig this scorer reads (None: none). It goes into the shard fingerprint, so
    # changing it re-scores the pool instead of mixing shards scored under two configurations.
    config_section: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.counters = Counters()

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def _account(self, out: dict[str, Any], n: int, started: float) -> dict[str, Any]:
        missing = set(self.column_names()) - set(out)
        if missing:
            raise RuntimeError(f"scorer {self.name} did not produce columns {sorted(missing)}")
        for name, values in out.items():
            if len(values) != n:
                raise RuntimeError(f"scorer {self.name} returned {len(values)} values for {name}, expected {n}")
        first = self.columns[0].name
        self.counters.nulls += sum(1 for v in out[first] if v is None or (isinstance(v, float) and np.isnan(v)))
        self.counters.rows += n
        self.counters.calls += 1
        self.counters.seconds += time.perf_counter() - started
        return out

    def empty_columns(self, n: int) -> dict[str, list[None]]:
        return {c.name: [None] * n for c in self.columns}

    def to_arrays(self, out: dict[str, Any]) -> dict[str, pa.Array]:
        return {c.name: pa.array(_as_list(out[c.name]), type=c.dtype) for c in self.columns}


class CpuScorer(Scorer):
    """A scorer cheap enough to run inside the decode task."""

    @abstractmethod
    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        """Return one sequence per declared column, aligned with the batch (None where unknown)."""

    def __call__(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        started = time.perf_counter()
        return self._account(dict(self.score(batch)), len(batch), started)


class ModelScorer(Scorer):
    """A scorer backed by a model; runs in an actor pool so the model loads once per worker."""

    # Shape of the per-sample array `prepare` returns (fixed, so batches stack).
    input_shape: ClassVar[tuple[int, ...]]
    input_dtype: ClassVar[str] = "uint8"
    wants_captions: ClassVar[bool] = False
    # True for a scorer that needs more pixels than the shared decode view (OCR): the actor hands `score` the
    # stored bytes of each row (`images`), which the table carries anyway, and the scorer decodes them at its
    # own size. A fixed canvas large enough for small text, prepared in the decode task, would cost megabytes
    # per sample in the object store; `prepare` then only marks the row as decodable.
    wants_images: ClassVar[bool] = False
    uses_gpu: ClassVar[bool] = False
    # Intra-op CPU threads; None lets the runtime choose. The pipeline sets it to the actor's CPU share,
    # because model threads spinning on cores that decode tasks also use were measured several times slower.
    threads: int | None = None

    @abstractmethod
    def prepare(self, decoded: Decoded) -> np.ndarray:
        """Cheap CPU preprocessing in the decode task: the decoded view -> a fixed-shape array."""

    @abstractmethod
    def load(self) -> None:
        """Load the model (once per actor). Raise ScorerUnavailable with the config key to set."""

    @abstractmethod
    def score(
        self, inputs: np.ndarray, captions: list[str | None], images: list[bytes] | None = None
    ) -> dict[str, Sequence[Any]]:
        """Score a stacked batch of prepared inputs; captions are given when `wants_captions`, the rows' stored
        bytes when `wants_images`."""

    def available(self) -> str | None:
        """None when the scorer can run; otherwise a message saying which config key to set."""
        return None

    def not_configured(self) -> bool:
        """True when no model is configured at all and the filter documents its column as null then.

        Only then is an unavailable model a warning; a model that is configured (or shipped) but cannot
        load is a ModelConfigError.
        """
        return False

    def __call__(
        self, inputs: np.ndarray, captions: list[str | None], images: list[bytes] | None = None
    ) -> dict[str, Sequence[Any]]:
        started = time.perf_counter()
        out = self.score(inputs, captions, images) if self.wants_images else self.score(inputs, captions)
        return self._account(dict(out), len(inputs), started)


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, np.ndarray):
        return values.tolist()
    return list(values)


class EmbeddingScorer(Scorer):
    """A scorer over the shared image embedding: one network pass per batch serves all of them.

    Rotation, aesthetics, category and semantic dedup all need an image embedding; running one network
    per filter multiplied the model cost. The pipeline computes the shared embedding once per batch (the
    `embedding` filter, EfficientNet-Lite0 pooled features, 1280-d, L2-normalised, stored in the pool as
    `image_embedding`) and hands every `EmbeddingScorer` the stacked result. Subclasses implement
    `score_embeddings`; `load` loads their small head once per actor.
    """

    wants_captions: ClassVar[bool] = False

    def load(self) -> None:
        """Load the scorer's head (once per actor). Raise ScorerUnavailable with the config key to set."""

    def available(self) -> str | None:
        """None when the scorer can run; otherwise a message saying which config key to set."""
        return None

    def not_configured(self) -> bool:
        """True when no head is configured and the filter documents its columns as null then."""
        return False

    @abstractmethod
    def score_embeddings(
        self, embeddings: np.ndarray, ok: np.ndarray, captions: list[str | None]
    ) -> dict[str, Sequence[Any]]:
        """Score `embeddings` (n x d float32, L2-normalised); rows with `ok` false were not decodable
        and must get None. Captions are given when `wants_captions`."""

    def __call__(self, embeddings: np.ndarray, ok: np.ndarray, captions: list[str | None]) -> dict[str, Sequence[Any]]:
        started = time.perf_counter()
        return self._account(dict(self.score_embeddings(embeddings, ok, captions)), len(embeddings), started)
