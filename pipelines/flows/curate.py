"""The `curate` flow: score a source into the pool, select a stage, report the funnel.

Runs locally without a Prefect server (Prefect starts a temporary local API backed by
SQLite under PREFECT_HOME) and, unchanged, against a server when PREFECT_API_URL is set.
Ray work is submitted from inside the tasks. Scoring is resumable, so when a partition
fails the task raises and Prefect's retry re-runs it: completed shards are skipped and
only the failed ones are scored again.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task

from filters.config import ScoringConfig
from filters.registry import column_owners
from flywheel.recipes import load_recipe
from flywheel.select import select as run_select
from flywheel.workspace import Workspace
from pipelines.flows import retry_unless_user_error
from pipelines.steps.score import score as run_score


@task(name="score", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error)
def score_task(
    source: str,
    workspace: str,
    ray_address: str | None,
    filters: list[str] | None,
    config: str | None,
    rows_per_partition: int,
) -> dict[str, Any]:
    logger = get_run_logger()
    result = run_score(
        source,
        Workspace.at(workspace),
        filters=filters,
        cfg=ScoringConfig.load(config),
        ray_address=ray_address,
        rows_per_partition=rows_per_partition,
        log=logger.warning,
    )
    logger.info("scored %d rows (%d new shards, %d skipped)", result.rows_written, result.written, result.skipped)
    return {
        "rows_written": result.rows_written,
        "written": result.written,
        "skipped": result.skipped,
        "unavailable": result.unavailable,
    }


@task(name="select")
def select_task(workspace: str, recipe: str, overrides: dict[str, str] | None) -> dict[str, Any]:
    rec = load_recipe(recipe)
    if overrides:
        rec = rec.with_overrides(overrides)
    selection = run_select(Workspace.at(workspace), rec, known_columns=column_owners())
    selection.funnel.check()
    return {
        "funnel": selection.funnel.to_json(),
        "funnel_text": selection.funnel.to_text(),
        "out_dir": str(selection.out_dir),
        "selection_dir": str(selection.meta_dir),
    }


@task(name="report")
def report_task(workspace: str, scored: dict[str, Any], selected: dict[str, Any]) -> dict[str, Any]:
    pool = Workspace.at(workspace).pool.read_manifest()
    report = {"pool_rows": pool["rows"], "pool_shards": len(pool["shards"]), **scored, **selected}
    get_run_logger().info("\n%s", selected["funnel_text"])
    return report


@flow(name="curate")
def curate(
    source: str,
    workspace: str,
    recipe: str = "stage1_256p",
    ray_address: str | None = None,
    filters: list[str] | None = None,
    config: str | None = None,
    overrides: dict[str, str] | None = None,
    rows_per_partition: int = 256,
) -> dict[str, Any]:
    scored = score_task(source, workspace, ray_address, filters, config, rows_per_partition)
    selected = select_task(workspace, recipe, overrides)
    return report_task(workspace, scored, selected)
