"""A real two-node Ray cluster on this machine: `flywheel score` and `flywheel train` give a local run's results.

Two `ray start` processes (a head and a worker node, one CPU each, their own temp dirs and ports, token
authentication on) stand in for two machines; the CLI runs as a user runs it, in its own process, against
the head's address. Nodes inherit the environment of `ray start`, not the driver's: PYTHONPATH (this
checkout) and HF_HUB_OFFLINE are set there, as docs/cluster.md tells a user to. Each node runs in its own
session and is killed with its whole process group (then any straggler of that session) in a finally, so
no Ray process outlives the test; `ray stop` is not used, it stops every Ray on the machine.

The auth and unreachable-address tests need only the head and take seconds; the two-node runs are slow.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flywheel.errors import UserError
from flywheel.workspace import Workspace
from pipelines.ray_runtime import ClusterUnreachable, check_cluster
from tests.images import encode, photo_like
from tests.trainer.fixtures import fixture_rows, write_curated
from tests.trainer.tiny import tiny_stage

REPO = Path(__file__).resolve().parents[2]
FILTERS = "broken,resolution,dedup,entropy"  # CPU scorers: the cluster path, not model downloads, is under test
STARTED = "Ray runtime started"
# `ray` of this interpreter, whichever `ray` is first on PATH
RAY_CLI = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayNode:
    """One `ray start --block` process in its own session (so one killpg reaches raylet, GCS and workers)."""

    proc: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path
    start_seconds: float = 0.0

    def stop(self) -> None:
        """SIGKILL the group, then anything else of the session (a worker that moved to its own group)."""
        sid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):  # the group is already gone: nothing of it to stop
            os.killpg(sid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.time() + 30
        while True:
            left = [p for p in psutil.process_iter(["pid"]) if _session(p) == sid]
            if not left:
                return
            if time.time() > deadline:
                raise AssertionError(f"Ray processes of node {self.temp_dir} still alive: {left}")
            for p in left:
                with contextlib.suppress(psutil.NoSuchProcess):  # it exited between the listing and the kill
                    p.kill()
            time.sleep(0.2)


def _session(p: psutil.Process) -> int | None:
    try:
        return os.getsid(p.pid)
    except (ProcessLookupError, PermissionError):
        return None


@dataclass
class Cluster:
    """A head (and, once `add_worker` ran, a worker node) sharing one token; `env` is the client's."""

    address: str
    token: str
    env: dict[str, str]
    root: Path
    nodes: list[RayNode] = field(default_factory=list)

    def add_worker(self) -> RayNode:
        node = _start_node(self.root / "worker", self.env, ["--address", self.address])
        self.nodes.append(node)
        return node


def _node_env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(
        PYTHONPATH=str(REPO),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        HF_HUB_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",
    )
    return env


def _start_node(temp_dir: Path, env: dict[str, str], role: list[str]) -> RayNode:
    temp_dir.mkdir(parents=True)
    log = temp_dir.with_suffix(".log")
    cmd = [
        *RAY_CLI,
        "start",
        "--block",
        *role,
        "--num-cpus",
        "1",
        "--object-store-memory",
        str(200 * 1024 * 1024),
        "--temp-dir",
        str(temp_dir),
        "--disable-usage-stats",
        # ports that default to fixed numbers, so a second node on the same machine must get its own
        "--dashboard-agent-listen-port",
        str(_free_port()),
        "--dashboard-agent-grpc-port",
        str(_free_port()),
        "--runtime-env-agent-port",
        str(_free_port()),
        "--metrics-export-port",
        str(_free_port()),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    node = RayNode(proc, temp_dir, log)
    started = time.perf_counter()
    deadline = time.time() + 120
    while STARTED not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            node.stop()
            raise AssertionError(f"ray start failed:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    node.start_seconds = time.perf_counter() - started
    return node


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A token-authenticated head with one CPU; tests add the worker node they need."""
    root = Path(tempfile.mkdtemp(prefix="fwray-", dir="/tmp"))  # short: Ray's socket paths live under it
    token = secrets.token_hex(16)
    env = _node_env(token)
    port = _free_port()
    c = Cluster(address=f"127.0.0.1:{port}", token=token, env=env, root=root)
    try:
        c.nodes.append(_start_node(root / "head", env, ["--head", "--port", str(port), "--include-dashboard", "false"]))
        yield c
    finally:
        left = []  # every node is stopped even if an earlier one leaves a process behind
        for node in reversed(c.nodes):
            try:
                node.stop()
            except AssertionError as exc:
                left.append(str(exc))
        shutil.rmtree(root, ignore_errors=bool(left))  # a live process may still write there
        assert not left, left


def _cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _error_lines(res: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]


def test_a_wrong_missing_or_unreadable_token_is_one_clear_line_in_seconds(cluster: Cluster, tmp_path: Path) -> None:
    _images(tmp_path / "src", 1)
    for env in (
        {**cluster.env, "RAY_AUTH_TOKEN": "wrong"},
        {k: v for k, v in cluster.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")},
        # Ray's token loader aborts the process (a C++ check) on this one if nothing catches it first
        {**{k: v for k, v in cluster.env.items() if k != "RAY_AUTH_TOKEN"}, "RAY_AUTH_TOKEN_PATH": "/nonexistent"},
    ):
        started = time.perf_counter()
        res = _cli(
            [
                "score",
                str(tmp_path / "src"),
                "-w",
                str(tmp_path / "ws"),
                "--filters",
                FILTERS,
                "--ray-address",
                cluster.address,
            ],
            env,
        )
        seconds = time.perf_counter() - started
        lines = _error_lines(res)
        assert res.returncode == 2, lines
        assert len(lines) == 1 and "Traceback" not in lines[0], lines
        for setting in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "ray get-auth-token"):
            assert setting in lines[0], lines[0]
        assert seconds < 20, f"{seconds:.1f}s"  # was ~20 s of retries plus a traceback; most of this is imports
    assert not Workspace.at(tmp_path / "ws").pool.shard_paths()


def test_an_address_where_no_cluster_answers_is_one_clear_line(tmp_path: Path) -> None:
    _images(tmp_path / "src", 1)
    env = _node_env("unused")
    address = f"127.0.0.1:{_free_port()}"  # nothing listens on a port just released
    started = time.perf_counter()
    res = _cli(
        ["score", str(tmp_path / "src"), "-w", str(tmp_path / "ws"), "--filters", FILTERS, "--ray-address", address],
        env,
    )
    seconds = time.perf_counter() - started
    lines = _error_lines(res)
    assert res.returncode == 1, lines
    assert len(lines) == 1 and f"no Ray cluster answers at {address}" in lines[0], lines
    assert "ray start --head" in lines[0]
    assert seconds < 20, f"{seconds:.1f}s"  # ray.init alone retried for minutes


def test_a_malformed_address_is_a_user_error_and_a_closed_port_is_unreachable() -> None:
    with pytest.raises(UserError, match="HOST:PORT"):
        check_cluster("headnode")
    with pytest.raises(ClusterUnreachable, match="no Ray cluster answers"):
        check_cluster(f"127.0.0.1:{_free_port()}", timeout_s=1.0)


def _images(root: Path, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"img{i:02d}.jpg").write_bytes(encode(photo_like(96 + 8 * i, 80 + 4 * i, seed=i)))
        (root / f"img{i:02d}.txt").write_text(f"a synthetic landscape number {i}")


def _pool(ws: Path) -> pa.Table:
    """Every pool row, columns sorted by name, rows by id: the order of shards and columns is not content."""
    table = pa.concat_tables([pq.read_table(s) for s in Workspace.at(ws).pool.shard_paths()])
    table = table.select(sorted(table.column_names))
    return table.sort_by("id")


def _losses(ws: Path, stage: str) -> list[float]:
    log = ws / "runs" / f"train-{stage}.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def _tasks_by_node(cluster: Cluster) -> dict[str, Counter[str]]:
    """Ray task executions per node and task name, from the `:task_name:` markers Ray writes into each
    worker's log (the nodes run no other job, so every task there is this run's)."""
    found = {}
    for node in cluster.nodes:
        names: Counter[str] = Counter()
        for out in node.temp_dir.glob("session_latest/logs/worker-*.out"):
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith(":task_name:"):
                    names[line.removeprefix(":task_name:")] += 1
        found[node.temp_dir.name] = names
    return found


def _alive_nodes(cluster: Cluster) -> int:
    code = "import ray; ray.init(address='%s', log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    res = subprocess.run(
        [sys.executable, "-c", code % cluster.address], env=cluster.env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return int(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_nodes_score_and_train_like_a_local_run(cluster: Cluster, tmp_path: Path) -> None:
    worker = cluster.add_worker()
    deadline = time.time() + 60
    while (alive := _alive_nodes(cluster)) < 2 and time.time() < deadline:
        time.sleep(1)
    assert alive == 2

    src = tmp_path / "src"
    _images(src, 12)
    local_env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    score = ["score", str(src), "--filters", FILTERS, "--rows-per-partition", "2"]
    timings = {"head_start": cluster.nodes[0].start_seconds, "worker_start": worker.start_seconds}
    for name, env, extra in (
        ("local", local_env, []),
        ("cluster", cluster.env, ["--ray-address", cluster.address]),
    ):
        started = time.perf_counter()
        res = _cli([*score, "-w", str(tmp_path / f"{name}-ws"), *extra], env)
        timings[f"score_{name}"] = time.perf_counter() - started
        assert res.returncode == 0, res.stdout + res.stderr
    local, remote = _pool(tmp_path / "local-ws"), _pool(tmp_path / "cluster-ws")
    assert local.num_rows == remote.num_rows == 12
    assert local.schema.equals(remote.schema, check_metadata=True)
    assert remote.equals(local), "the cluster's pool differs from the local run's"
    tasks = _tasks_by_node(cluster)
    assert all(sum(names.values()) > 0 for names in tasks.values()), tasks  # both nodes scored partitions

    stage = tiny_stage("cluster_tiny", train={"steps": 3, "log_every": 1, "checkpoint_every": 3}).to_dict()
    stage_yaml = tmp_path / "cluster_tiny.yaml"
    stage_yaml.write_text(yaml.safe_dump(stage))
    write_curated(tmp_path / "train-local", rows=fixture_rows(4, 4, sizes=((32, 32),)))
    shutil.copytree(tmp_path / "train-local", tmp_path / "train-cluster")
    train = ["train", "--stage", str(stage_yaml), "--ray-workers", "2", "--threads", "1"]
    for name, env, extra in (
        ("local", local_env, []),
        ("cluster", cluster.env, ["--ray-address", cluster.address]),
    ):
        started = time.perf_counter()
        res = _cli([*train, "-w", str(tmp_path / f"train-{name}"), *extra], env)
        timings[f"train_{name}"] = time.perf_counter() - started
        assert res.returncode == 0, res.stdout + res.stderr
        assert "'world': 2" in res.stdout, res.stdout
    local_losses = _losses(tmp_path / "train-local", "cluster_tiny")
    cluster_losses = _losses(tmp_path / "train-cluster", "cluster_tiny")
    assert len(local_losses) == 3 and cluster_losses == local_losses
    per_node = {node: dict(names) for node, names in tasks.items()}
    print(f"two-node timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}; tasks {per_node}")
