"""Starting Ray the same way everywhere: local by default, a cluster when an address is given."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
# Model-loading bars (transformers "Loading weights", hub downloads) from every actor: noise in a CLI run.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import logging
import warnings

import ray

# LanceDB warns at every fork once it is imported. Ray starts its local processes with subprocess
# (fork immediately followed by exec), where no LanceDB state is touched in the child, so the deadlock the
# warning names cannot happen there; it printed five times per run.
warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)

# Third-party lines that are notices, not problems, printed on every run; explained once in
# docs/reliability.md ("Operations and configuration"). Token authentication itself stays on.
_QUIET_LOGGERS = (
    "ray._private.authentication.authentication_token_setup",  # "Token authentication is enabled ..."
    "ray.data._internal.progress",  # "Progress bars disabled": the CLI draws its own (rich) bar
    "ray.data._internal.execution.streaming_executor",  # "Dataset ... execution finished in N seconds"
)

DEFAULT_OBJECT_STORE_BYTES = 1 << 30  # bounded so a laptop or a CI box is never swapped out


def init_ray(
    address: str | None = None, *, num_cpus: int | None = None, object_store_memory: int | None = None
) -> None:
    """Connect to `address` (a cluster) or start a local Ray with a bounded object store."""
    if ray.is_initialized():
        return
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    store = object_store_memory or int(os.environ.get("FLYWHEEL_RAY_OBJECT_STORE", DEFAULT_OBJECT_STORE_BYTES))
    ray.init(
        num_cpus=num_cpus,
        object_store_memory=store,
        include_dashboard=False,
        log_to_driver=True,
        configure_logging=False,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws its own (rich) progress
    ctx.print_on_execution_start = False
