"""Starting Ray the same way everywhere: local by default, a cluster when an address is given."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
# Model-loading bars (transformers "Loading weights", hub downloads) from every actor: noise in a CLI run.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import contextlib
import logging
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator

import ray

from flywheel.errors import RunFailed, UserError

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


CONNECT_TIMEOUT_S = 5.0  # a TCP connect on a LAN takes milliseconds; a firewalled address never answers
AUTH_SETTINGS = (
    "set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN, or in a file named by "
    "RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token); `ray get-auth-token` on the head node prints it"
)


class ClusterAuthFailed(UserError):
    """The cluster refused this client's token (or the client has none): re-running unchanged cannot help."""


class ClusterUnreachable(RunFailed):
    """No Ray cluster answered at the address; a cluster that is still starting may answer a retry."""


def init_ray(
    address: str | None = None, *, num_cpus: int | None = None, object_store_memory: int | None = None
) -> None:
    """Connect to `address` (a cluster) or start a local Ray with a bounded object store.

    Before connecting, the cluster's address and token are checked (`check_cluster`): `ray.init` itself
    retries a refused token for about 20 s and an address where nothing answers for minutes, then ends
    in a traceback; the check turns both into one line that names what to fix.
    """
    if ray.is_initialized():
        return
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if address:
        check_cluster(address)
        try:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
        except ray.exceptions.AuthenticationError as exc:  # a token that became invalid between check and init
            raise ClusterAuthFailed(f"Ray cluster at {address} refused this client's token: {AUTH_SETTINGS}") from exc
        except ConnectionError as exc:
            raise ClusterUnreachable(f"could not connect to the Ray cluster at {address}: {exc}") from exc
    else:
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


def shutdown_ray() -> None:
    """Stop the local Ray this process started (or leave the cluster) now, instead of in Ray's exit hook.

    Why: the exit hook first sleeps 0.5 s so that log lines still in flight from workers get printed, then
    stops the local processes; a CLI command whose results are written and printed has nothing left to wait
    for, and the user waits for the prompt.
    """
    if ray.is_initialized():
        ray.shutdown()


def _host_port(address: str) -> tuple[str, int] | None:
    """`host:port` of a GCS address; None for the forms Ray resolves itself ("auto", "ray://...")."""
    if "://" in address or address in ("auto", "local"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--ray-address must be HOST:PORT of the head node's GCS (e.g. 10.0.0.5:6379), got {address!r}")
    return host.strip("[]"), int(port)


def check_cluster(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ClusterUnreachable or ClusterAuthFailed, in seconds, where `ray.init(address)` would hang.

    Three checks, cheapest first: a TCP connect to the GCS port (nothing listening: refused at once, or
    silent until `timeout_s`); a token present locally when RAY_AUTH_MODE=token (Ray's token loader
    aborts the process on some missing-token paths); one GetClusterId call through Ray's own GCS client,
    which carries the token and comes back "Unauthenticated" at once when the cluster refuses it.
    """
    parsed = _host_port(address)
    if parsed is None:
        return
    try:
        socket.create_connection(parsed, timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachable(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start a head with "
            f"`ray start --head --port {parsed[1]}` or pass the address it printed to --ray-address"
        ) from exc
    from ray._raylet import AuthenticationMode, AuthenticationTokenLoader, InnerGcsClient, get_authentication_mode

    mode = "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"
    if mode == "token":
        try:
            present = AuthenticationTokenLoader.instance().has_token()
        except ray.exceptions.AuthenticationError as exc:  # e.g. RAY_AUTH_TOKEN_PATH names no readable file
            reason = str(exc).split(". ")[0]  # Ray's first sentence names the file; the rest restates the settings
            raise ClusterAuthFailed(
                f"RAY_AUTH_MODE=token but the token cannot be read ({reason}); {AUTH_SETTINGS}"
            ) from exc
        if not present:
            raise ClusterAuthFailed(f"RAY_AUTH_MODE=token but no token was found; {AUTH_SETTINGS}")
    with _stderr_held() as held:
        try:
            InnerGcsClient.standalone(f"{parsed[0]}:{parsed[1]}", None, int(timeout_s * 1000))
        except ray.exceptions.AuthenticationError as exc:
            held.drop()
            given = "a token that" if mode == "token" else "no token (RAY_AUTH_MODE is not token), which"
            raise ClusterAuthFailed(
                f"the Ray cluster at {address} uses token authentication and this client sent {given} it "
                f"refused: {AUTH_SETTINGS}"
            ) from exc
        except ray.exceptions.RpcError as exc:
            held.drop()
            raise ClusterUnreachable(
                f"something listens at {address} but no Ray GCS answered within {timeout_s:.0f} s ({exc}); "
                "is this the head node's GCS port (`ray start --head --port`)?"
            ) from exc


class _HeldStderr:
    """What Ray's C++ client wrote to file descriptor 2 during the probe, replayed unless `drop` was called."""

    def __init__(self) -> None:
        self.keep = True

    def drop(self) -> None:
        self.keep = False


@contextlib.contextmanager
def _stderr_held() -> Iterator[_HeldStderr]:
    """Hold file descriptor 2 in a temporary file for the probe's duration.

    Why: Ray's C++ GCS client logs one "Failed to get cluster ID ... Unauthenticated" line per retry straight
    to fd 2 (no log level setting reaches it before `ray.init`), so the one-line error would come after a
    screen of them. They restate the error the probe raises, so a translated error drops them; any other
    outcome (success, an unexpected exception) writes them back to stderr unchanged.
    """
    held = _HeldStderr()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield held
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if held.keep:
                tmp.seek(0)
                sys.stderr.buffer.write(tmp.read())
                sys.stderr.flush()
