"""Session-wide fixtures: one local Ray for the whole test session, offline model settings."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# On a loaded 2-core machine the temporary Prefect server can take longer than the 20 s default to start.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
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


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_temporary_server() -> Iterator[None]:
    """Stop Prefect's temporary API server while pytest's streams are still open.

    Prefect stops the server it starts for flows without PREFECT_API_URL from an `atexit` hook, which runs
    after pytest has closed the captured stream its log handler writes to: the run then ended with a
    "--- Logging error ---" traceback after the summary. Stopping it at session teardown logs into the
    capture instead, and leaves the atexit hook nothing to do.
    """
    yield
    import sys

    if "prefect.server.api.server" not in sys.modules:
        return  # no flow ran in this session, so no server was started
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """An S3-compatible server (moto) on the loopback for the session, with the AWS variables pointing at it.

    Yields `s3://<bucket>`, an empty bucket; tests use a fresh prefix under it. The variables are the
    standard ones a user sets (flywheel.store.fs), and are restored afterwards.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "flywheel-test",
        "AWS_SECRET_ACCESS_KEY": "flywheel-test-secret",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    import boto3

    boto3.client("s3", endpoint_url=settings["AWS_ENDPOINT_URL"]).create_bucket(Bucket="flywheel-test")
    yield "s3://flywheel-test"
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()
