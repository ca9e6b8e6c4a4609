"""The tracks, declared once: every other part (bad-case store, routing policy, loop, turns, dashboards, CLI)
reads track names from here instead of spelling them.

A track is where a routed bad case goes to be fixed: `pretrain` (more training data like it), `rl`
(preference pairs), `prompt` (prompt rewrites), or `dismiss` (an annotator says it is not a model error; no
data). Adding a track is one file (`flywheel/tracks/<name>.py` with a `build(inputs) -> dataclass` function),
one `register(...)` line below, and one test. Why a dotted path to the builder instead of the function: the
bad-case store imports this module to validate names, and the builders import the store, so the registry
must not import them eagerly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flywheel.errors import UserError

if TYPE_CHECKING:
    from flywheel.badcases.store import BadCaseStore
    from flywheel.retrieval.config import IndexConfig
    from flywheel.retrieval.engine import RetrievalEngine
    from flywheel.workspace import Workspace


@dataclass
class TrackInputs:
    """What a track's builder may use; the loop step fills it once for every requested track."""

    ws: Workspace
    store: BadCaseStore
    engine: RetrievalEngine | None  # the pool's index; None when `flywheel index` has not run
    text_embedder: Any  # MiniLM (flywheel.models.embedders.MiniLMTextEmbedder)
    index_cfg: IndexConfig | None = None
    expansion: Any = None  # pretrain: flywheel.tracks.pretrain.ExpansionConfig
    llm: Any = None  # prompt: flywheel.tracks.prompt.LlmEndpoint
    min_margin: float = 0.1  # rl: minimum reward margin of a pair
    reservoirs: Callable[[], Sequence[Any]] = tuple  # pretrain: extra search sources (reservoir indexes)


@dataclass(frozen=True)
class Track:
    name: str
    description: str
    builder: str | None  # "module:function" writing the track's data; None: the track holds no data
    routable: bool = True  # a routing rule may send a case here (dismiss is an annotator's call only)
    trains: bool = False  # a wheel turn trains on its rows (the prompt track feeds the enhancer instead)
    mixable: bool = False  # rows are curated-like, so a recipe's `mix:` may take them (`from: tracks/<name>`)

    def build(self, inputs: TrackInputs) -> Any:
        if self.builder is None:
            raise UserError(f"track {self.name!r} holds no data to write")
        module, _, func = self.builder.partition(":")
        return getattr(importlib.import_module(module), func)(inputs)


_TRACKS: dict[str, Track] = {}


def register(track: Track) -> Track:
    if track.name in _TRACKS or track.name == "unrouted":  # "unrouted" is the store's filter for no track
        raise ValueError(f"track {track.name!r} registered twice or reserved")
    _TRACKS[track.name] = track
    return track


def get(name: str) -> Track:
    if name not in _TRACKS:
        raise UserError(f"unknown track {name!r}; choose one of {names()}")
    return _TRACKS[name]


def names() -> tuple[str, ...]:
    """Every track a case can be in, in registration order (the triage keys 1..n follow it)."""
    return tuple(_TRACKS)


def routable() -> tuple[str, ...]:
    return tuple(t.name for t in _TRACKS.values() if t.routable)


def data_tracks() -> tuple[str, ...]:
    """The tracks that write data under WORKSPACE/tracks/<name>/."""
    return tuple(t.name for t in _TRACKS.values() if t.builder is not None)


def training_tracks() -> tuple[str, ...]:
    return tuple(t.name for t in _TRACKS.values() if t.trains)


def mixable() -> tuple[str, ...]:
    return tuple(t.name for t in _TRACKS.values() if t.mixable)


register(Track("rl", "preference pairs of outputs of one prompt", "flywheel.tracks.rl:build", trains=True))
register(
    Track(
        "pretrain", "training rows retrieved like the case", "flywheel.tracks.pretrain:build", trains=True, mixable=True
    )
)
register(Track("prompt", "prompt rewrites for the enhancer", "flywheel.tracks.prompt:build"))
register(Track("dismiss", "not a model error (an annotator's decision)", None, routable=False))
