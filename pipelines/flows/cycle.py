"""The `cycle` flow: ingest bad cases -> (index) -> route -> expand (write every track) -> export.

One turn of the data flywheel, run by hand (`flywheel cycle`). It is a plain Prefect flow, so it can be
deployed and scheduled with Prefect's own tools, but Flywheel ships no deployment or schedule. Without a
server Prefect uses a temporary local API; with PREFECT_API_URL set the same flow runs on workers. Every
step is idempotent (ingest by content key, index by id, routing skips routed/decided cases, tracks are
rewritten from the store), so a retried or re-scheduled run never duplicates data.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task

from flywheel.badcases import BadCaseStore, ingest_file
from flywheel.badcases.export import export_parquet
from flywheel.workspace import Workspace
from pipelines.flows import retry_unless_user_error


@task(name="ingest")
def ingest_task(workspace: str, inputs: list[str]) -> dict[str, Any]:
    store = BadCaseStore.for_workspace(Workspace.at(workspace).root)
    return {Path(p).name: asdict(ingest_file(store, Path(p)).result) for p in inputs}


@task(name="index", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error)
def index_task(workspace: str, ray_address: str | None) -> list[dict[str, Any]]:
    from pipelines.steps.index import build_index

    report = build_index(Workspace.at(workspace), ray_address=ray_address, log=get_run_logger().info)
    return [asdict(t) for t in report.tables]


@task(name="route")
def route_task(workspace: str, mode: str) -> dict[str, Any]:
    from pipelines.steps.loop import route

    return asdict(route(Workspace.at(workspace), mode=mode))


@task(name="expand")
def expand_task(workspace: str) -> dict[str, Any]:
    from pipelines.steps.loop import write_tracks

    return write_tracks(Workspace.at(workspace)).as_dict()


@task(name="export")
def export_task(workspace: str, out: str) -> int:
    return export_parquet(BadCaseStore.for_workspace(Workspace.at(workspace).root), Path(out))


@flow(name="cycle")
def cycle(
    workspace: str,
    inputs: list[str] | None = None,
    export: str | None = None,
    mode: str = "rules",
    index: bool = True,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """One flywheel turn over WORKSPACE; `inputs` are evaluation Parquet / feedback JSONL-CSV files."""
    report: dict[str, Any] = {"ingested": ingest_task(workspace, inputs or [])}
    if index:
        report["index"] = index_task(workspace, ray_address)
    report["route"] = route_task(workspace, mode)
    report["tracks"] = expand_task(workspace)
    if export:
        report["exported"] = export_task(workspace, export)
    return report
