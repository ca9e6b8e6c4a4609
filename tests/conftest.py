"""Session-wide fixtures: one local Ray for the whole test session, offline model settings."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect without a server starts a local one on SQLite under PREFECT_HOME: keep it out of ~.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flywheel-prefect-"))

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Start Ray once per session (starting it costs seconds); tests that need it ask for it."""
    import ray

    from pipelines.ray_runtime import init_ray

    init_ray(num_cpus=2, object_store_memory=300 * 1024 * 1024)
    yield
    ray.shutdown()
