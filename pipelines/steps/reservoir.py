"""Adding a reservoir: score a source into `WS/reservoirs/<name>/pool`, index it, register it.

The same Ray scoring and indexing steps as the pool, pointed at the reservoir's workspace-shaped folder;
no selection runs, so nothing of it is curated until the pretrain track retrieves it for a bad case.
"""

from __future__ import annotations

from collections.abc import Callable

from filters.config import ScoringConfig
from flywheel.reservoir import Reservoir, register, reservoir_workspace
from flywheel.workspace import Workspace
from pipelines.steps.index import build_index
from pipelines.steps.score import score


def add_reservoir(
    ws: Workspace,
    source: str,
    name: str,
    cfg: ScoringConfig | None = None,
    *,
    ray_address: str | None = None,
    rows_per_partition: int = 256,
    log: Callable[[str], None] = lambda _m: None,
) -> Reservoir:
    rws = reservoir_workspace(ws, name)
    result = score(
        source,
        rws,
        cfg=cfg or ScoringConfig.load(),
        ray_address=ray_address,
        rows_per_partition=rows_per_partition,
        log=log,
    )
    build_index(rws, ray_address=ray_address, log=log)
    rows = sum(info.rows for info in rws.pool.infos())
    log(f"reservoir {name}: {result.rows_written} new rows scored, {rows} in all")
    return register(ws, name, source, rows)
