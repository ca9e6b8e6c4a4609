"""The `caption` flow: caption a curated selection as a Prefect task (resumable, so retries redo only the rest).

Captioning is resumable per shard and endpoint answers are cached per request, so when a
shard fails the task raises and Prefect's retry re-runs it: finished shards are skipped and
finished endpoint requests are answered from the cache.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task

from captioners.config import CaptionConfig
from captioners.types import parse_types
from flywheel.workspace import Workspace
from pipelines.flows import retry_unless_user_error
from pipelines.steps.caption import caption as run_caption


@task(name="caption", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error)
def caption_task(
    workspace: str, recipe: str, types: str | None, backend: str | None, config: str | None, ray_address: str | None
) -> dict[str, Any]:
    logger = get_run_logger()
    kinds = parse_types(types)
    cfg = CaptionConfig.load(config)
    if backend:
        cfg = cfg.with_backend(backend, kinds)
    result = run_caption(Workspace.at(workspace), recipe, kinds, cfg, ray_address=ray_address, log=logger.warning)
    logger.info("captioned %d rows (%d new shards, %d skipped)", result.rows_written, result.written, result.skipped)
    return {
        "rows_written": result.rows_written,
        "written": result.written,
        "skipped": result.skipped,
        "out_dir": str(result.out_dir),
        "summary": result.summary,
    }


@flow(name="caption")
def caption_flow(
    workspace: str,
    recipe: str = "stage1_256p",
    types: str | None = None,
    backend: str | None = None,
    config: str | None = None,
    ray_address: str | None = None,
) -> dict[str, Any]:
    return caption_task(workspace, recipe, types, backend, config, ray_address)
