"""The flywheel loop's composed steps (route, write tracks), shared by the CLI, the `cycle` flow and the demo.

This is where the core's protocols meet concrete models: the MiniLM embedder (and CLIP when configured)
feeds coverage evidence, expansion and rewrite-target lookup.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flywheel.badcases.store import BadCaseStore
from flywheel.errors import UserError
from flywheel.models.embedders import MiniLMTextEmbedder
from flywheel.reservoir import list_reservoirs, reservoir_workspace
from flywheel.retrieval.config import IndexConfig
from flywheel.retrieval.engine import RetrievalEngine
from flywheel.routing.evidence import IndexCoverage
from flywheel.routing.learned import LearnedRouter
from flywheel.routing.policy import Policy
from flywheel.routing.router import RouteSummary, route_store
from flywheel.tracks import registry
from flywheel.tracks.pretrain import ExpansionConfig, SearchSource
from flywheel.tracks.prompt import LlmEndpoint
from flywheel.tracks.registry import TrackInputs
from flywheel.workspace import Workspace


def router_path(ws: Workspace) -> Path:
    return ws.badcases_dir / "learned_router.json"


def engine_for(ws: Workspace, cfg: IndexConfig | None = None) -> RetrievalEngine | None:
    """The workspace's retrieval engine, or None when `flywheel index` has not run (routing then has no
    coverage evidence and says so)."""
    if not ws.index_dir.is_dir():
        return None
    engine = RetrievalEngine(ws.index_dir, (cfg or IndexConfig.for_workspace(ws)).ann)
    return engine if engine.table_names() else None


def route(
    ws: Workspace,
    *,
    policy_path: Path | None = None,
    mode: str = "rules",
    min_confidence: float = 0.7,
    reroute: bool = False,
    text_embedder: MiniLMTextEmbedder | None = None,
) -> RouteSummary:
    policy = Policy.load(policy_path)
    engine = engine_for(ws)
    probe = None
    if engine is not None:
        probe = IndexCoverage(
            engine, text_embedder or MiniLMTextEmbedder(), policy.coverage.k, policy.coverage.near_similarity
        )
    learned = LearnedRouter.load(router_path(ws)) if mode != "rules" else None
    return route_store(
        BadCaseStore.for_workspace(ws.root),
        policy,
        probe,
        mode=mode,
        learned=learned,
        min_confidence=min_confidence,
        reroute=reroute,
    )


def reservoir_sources(ws: Workspace) -> list[SearchSource]:
    """Every registered reservoir that has an index, as a search source of the pretrain track."""
    out = []
    for r in list_reservoirs(ws):
        rws = reservoir_workspace(ws, r.name)
        engine = engine_for(rws)
        if engine is not None:
            out.append(SearchSource(r.provenance, rws, engine))
    return out


@dataclass
class TracksReport:
    """Each written track's result by name (`report.rl`, `report["rl"]`); None for a track not requested."""

    written: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getattr__(self, name: str) -> dict[str, Any] | None:
        if name in registry.data_tracks():
            return self.written.get(name)
        raise AttributeError(name)

    def as_dict(self) -> dict[str, dict[str, Any] | None]:
        return {name: self.written.get(name) for name in registry.data_tracks()}


def write_tracks(
    ws: Workspace,
    tracks: tuple[str, ...] | None = None,
    *,
    expansion: ExpansionConfig | None = None,
    llm: LlmEndpoint | None = None,
    min_margin: float = 0.1,
    index_cfg: IndexConfig | None = None,
    text_embedder: MiniLMTextEmbedder | None = None,
) -> TracksReport:
    """Write each requested track's data (all data tracks by default) from the routed bad cases, in the
    registry's order."""
    tracks = registry.data_tracks() if tracks is None else tracks
    unknown = set(tracks) - set(registry.data_tracks())
    if unknown:
        raise UserError(f"unknown track(s) {sorted(unknown)}; known: {registry.data_tracks()}")
    index_cfg = index_cfg or IndexConfig.for_workspace(ws)
    inputs = TrackInputs(
        ws=ws,
        store=BadCaseStore.for_workspace(ws.root),
        engine=engine_for(ws, index_cfg),
        text_embedder=text_embedder or MiniLMTextEmbedder(),
        index_cfg=index_cfg,
        expansion=expansion,
        llm=llm,
        min_margin=min_margin,
        reservoirs=lambda: reservoir_sources(ws),
    )
    report = TracksReport()
    for name in registry.data_tracks():
        if name in tracks:
            report.written[name] = asdict(registry.get(name).build(inputs))
    return report
