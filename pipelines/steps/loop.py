"""The flywheel loop's composed steps (route, write tracks), shared by the CLI, the `cycle` flow and the demo.

This is where the core's protocols meet concrete models: the MiniLM embedder (and CLIP when configured)
feeds coverage evidence, expansion and rewrite-target lookup.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flywheel.badcases.store import BadCaseStore
from flywheel.errors import UserError
from flywheel.models.embedders import MiniLMTextEmbedder, clip_from_config
from flywheel.reservoir import list_reservoirs, reservoir_workspace
from flywheel.retrieval.config import IndexConfig
from flywheel.retrieval.engine import IndexError_, RetrievalEngine
from flywheel.routing.evidence import IndexCoverage
from flywheel.routing.learned import LearnedRouter
from flywheel.routing.policy import Policy
from flywheel.routing.router import RouteSummary, route_store
from flywheel.tracks.common import TRACK_NAMES
from flywheel.tracks.pretrain import ExpansionConfig, SearchSource, expand
from flywheel.tracks.prompt import LlmEndpoint, rewrite_pairs
from flywheel.tracks.rl import write_rl_track
from flywheel.workspace import Workspace


def router_path(ws: Workspace) -> Path:
    return ws.root / "badcases" / "learned_router.json"


def engine_for(ws: Workspace, cfg: IndexConfig | None = None) -> RetrievalEngine | None:
    """The workspace's retrieval engine, or None when `flywheel index` has not run (routing then has no
    coverage evidence and says so)."""
    if not (ws.root / "index").is_dir():
        return None
    engine = RetrievalEngine(ws.root / "index", (cfg or IndexConfig.load()).ann)
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
    pretrain: dict[str, Any] | None = None
    rl: dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None


def write_tracks(
    ws: Workspace,
    tracks: tuple[str, ...] = TRACK_NAMES,
    *,
    expansion: ExpansionConfig | None = None,
    llm: LlmEndpoint | None = None,
    min_margin: float = 0.1,
    index_cfg: IndexConfig | None = None,
    text_embedder: MiniLMTextEmbedder | None = None,
) -> TracksReport:
    """Write each requested track's data from the routed bad cases."""
    unknown = set(tracks) - set(TRACK_NAMES)
    if unknown:
        raise UserError(f"unknown track(s) {sorted(unknown)}; known: {TRACK_NAMES}")
    store = BadCaseStore.for_workspace(ws.root)
    engine = engine_for(ws, index_cfg)
    text = text_embedder or MiniLMTextEmbedder()
    report = TracksReport()
    if "pretrain" in tracks:
        cases = store.list(track="pretrain")
        if engine is None:
            raise IndexError_(f"the pretrain track retrieves from the index: run `flywheel index -w {ws.root}` first")
        embedders: list[Any] = [text]
        clip = clip_from_config(index_cfg or IndexConfig.load())
        if clip is not None:
            embedders.append(clip)
        report.pretrain = asdict(expand(ws, engine, embedders, cases, expansion, reservoirs=reservoir_sources(ws)))
    if "rl" in tracks:
        report.rl = asdict(write_rl_track(ws, store, min_margin=min_margin))
    if "prompt" in tracks:
        cases = store.list(track="prompt")
        report.prompt = asdict(rewrite_pairs(ws, cases, engine=engine, embedder=text, llm=llm))
    return report
