"""The `retrain` flow: one turn end to end in Prefect's test harness, the DPO stage when the routed cases call
for it, idempotent re-runs, the CLI, and a real scheduled run of the `flywheel schedule` deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from flywheel.badcases import BadCaseStore
from pipelines.cli import app
from pipelines.flows.retrain import retrain
from pipelines.steps.turn import list_turns
from tests.trainer.fixtures import fixture_rows, pair_rows, write_curated, write_pairs
from tests.trainer.tiny import tiny_stage

PROMPTS = """name: tiny
prompts:
  - {id: s, category: scene, task: T2I, prompt: a red circle on a white background}
  - {id: e, category: edit, task: TI2I, prompt: make the circle blue, source: {shape: circle, color: red}}
"""
STARTUP = int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=STARTUP):
        yield


def _setup(tmp_path: Path) -> dict[str, object]:
    ws = tmp_path / "ws"
    write_curated(ws, rows=fixture_rows(8, 0, sizes=((32, 32),)))
    stage = tmp_path / "turn_tiny.yaml"
    cfg = tiny_stage("turn_tiny", data={"t2i_ratio": 1.0}, train={"steps": 4, "checkpoint_every": 4})
    stage.write_text(yaml.safe_dump(cfg.to_dict()))
    dpo = tmp_path / "dpo_tiny.yaml"
    dpo_cfg = tiny_stage(
        "dpo_tiny",
        kind="dpo",
        data={"t2i_ratio": 1.0, "uncond_dropout": 0.0},
        train={"steps": 3, "checkpoint_every": 3, "init_from": "turn_tiny"},
    )
    dpo.write_text(yaml.safe_dump(dpo_cfg.to_dict()))
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(PROMPTS)
    return {
        "workspace": str(ws),
        "stage": str(stage),
        "dpo_stage": str(dpo),
        "prompts": str(prompts),
        "seeds": [0, 1],
        "eval_steps": 2,
        "index": False,
    }


def test_a_turn_trains_evaluates_routes_and_reports_and_rerunning_adds_nothing(tmp_path, harness):
    params = _setup(tmp_path)
    ws = Path(str(params["workspace"]))
    out = retrain(**params)
    assert out["status"] == "done" and out["turn"] == "turn-0001"
    turn = list_turns(__import__("flywheel.workspace", fromlist=["Workspace"]).Workspace.at(ws))[0]
    steps = turn.steps
    assert steps["train"]["stages"][0]["why"] == "no checkpoint yet"
    assert steps["train"]["stages"][0]["kind"] == "flow" and steps["train"]["stages"][0]["steps_run"] == 4
    assert steps["evaluate"]["summary"]["outputs"] == 4
    assert steps["ingest_evaluation"]["added"] == 4
    assert steps["route_tracks"]["route"]["routed"] >= 1
    assert (turn.dir / "report.md").is_file() and json.loads((turn.dir / "report.json").read_text())["after"]
    store = BadCaseStore.for_workspace(ws)
    cases = len(store.list(kind=None))

    # nothing new: no new turn, nothing added
    again = retrain(**params)
    assert again["status"] == "skipped" and "nothing new" in again["reason"]
    # re-running the finished turn by number adds nothing either
    rerun = retrain(**params, turn=1)
    assert rerun["status"] == "done" and rerun["reason"] == "already finished"
    assert len(store.list(kind=None)) == cases and len(list_turns(turn.ws)) == 1

    # preference pairs in tracks/rl and cases routed to rl call for the DPO stage in the next turn,
    # continuing the last turn's checkpoint; the report compares with turn 1's evaluation
    write_pairs(ws, pair_rows(4))
    assert store.counts().get("bad:rl", 0) >= 1
    second = retrain(**params)
    assert second["turn"] == "turn-0002", second
    t2 = list_turns(turn.ws)[1]
    kinds = [s["kind"] for s in t2.steps["train"]["stages"]]
    assert kinds == ["dpo"]
    assert t2.steps["train"]["stages"][0]["init_from"] == steps["train"]["checkpoint"]
    assert "dpo_tiny-turn-0002" in t2.steps["train"]["checkpoint"]
    assert t2.steps["baseline"]["from"] == "turn-0001"
    assert second["report"]["before"] == steps["evaluate"]["summary"]["checkpoint"]


def test_an_interrupted_turn_resumes_without_redoing_finished_steps(tmp_path, harness, monkeypatch):
    params = _setup(tmp_path)
    from pipelines.flows import retrain as module

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation worker lost")

    real = module._evaluate
    monkeypatch.setattr(module, "_evaluate", broken)
    with pytest.raises(RuntimeError, match="worker lost"):
        retrain(**params)
    monkeypatch.setattr(module, "_evaluate", real)
    ws = __import__("flywheel.workspace", fromlist=["Workspace"]).Workspace.at(params["workspace"])
    turn = list_turns(ws)[0]
    assert not turn.done and "train" in turn.steps
    trained = turn.steps["train"]["checkpoint"]
    out = retrain(**params)
    assert out["turn"] == "turn-0001" and "resumed" in out["reason"]
    assert list_turns(ws)[0].steps["train"]["checkpoint"] == trained  # training was not run again


def test_cli_retrain_and_bad_input(tmp_path, harness):
    params = _setup(tmp_path)
    args = ["retrain", "-w", params["workspace"], "--stage", params["stage"], "--dpo-stage", params["dpo_stage"]]
    args += ["--prompts", params["prompts"], "--seeds", "0", "--eval-steps", "2", "--no-index"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "turn-0001: done" in res.output and "report.md" in res.output
    res = CliRunner().invoke(app, ["retrain", "-w", params["workspace"], "--stage", "no_such_stage"])
    assert res.exit_code == 2 and "unknown stage" in res.output
    res = CliRunner().invoke(app, ["schedule", "-w", params["workspace"], "--cron", "not a cron"])
    assert res.exit_code == 2 and "cron" in res.output
    res = CliRunner().invoke(app, ["schedule", "-w", params["workspace"]])
    assert res.exit_code == 2 and "exactly one" in res.output


@pytest.mark.slow
def test_flywheel_schedule_runs_a_turn_on_its_interval(tmp_path):
    """A real scheduled run: `flywheel schedule --interval 5` starts a local Prefect server (the temporary API
    runs no scheduler), registers the deployment and serves it; the scheduler starts a run, which completes a
    turn in the workspace. Slow-ish (server start-up), but it is the only test of the schedule itself."""
    params = _setup(tmp_path)
    ws = Path(str(params["workspace"]))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(Path.cwd()), PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_RUNNER_POLL_FREQUENCY="2")
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "240")
    cmd = [sys.executable, "-m", "pipelines.cli", "schedule", "-w", str(ws), "--interval", "5", "--name", "t"]
    cmd += ["--stage", str(params["stage"]), "--dpo-stage", str(params["dpo_stage"])]
    cmd += ["--prompts", str(params["prompts"]), "--seeds", "0", "--eval-steps", "2", "--no-index", "--when", "always"]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    done = ws / "turns" / "turn-0001" / "turn.json"
    try:
        deadline = time.time() + 480
        while time.time() < deadline and proc.poll() is None:
            if done.is_file() and json.loads(done.read_text()).get("status") == "done":
                break
            time.sleep(2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the serve process and the local server it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert done.is_file(), output[-3000:]
    record = json.loads(done.read_text())
    assert record["status"] == "done" and record["steps"]["evaluate"]["summary"]["outputs"] == 2, output[-3000:]
    assert "serving retrain/t {'interval': 5.0}" in output and "local Prefect server at" in output


def test_flywheel_schedule_deploys_to_a_work_pool_when_a_server_is_configured(tmp_path, harness, monkeypatch):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    params = _setup(tmp_path)

    async def make_pool():
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="flywheel-pool", type="process"))

    asyncio.run(make_pool())
    args = ["schedule", "-w", params["workspace"], "--cron", "0 3 * * *", "--work-pool", "flywheel-pool"]
    args += ["--name", "nightly", "--stage", params["stage"], "--dpo-stage", params["dpo_stage"]]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "PREFECT_API_URL" in res.output  # no server configured in the environment
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "deployed retrain/nightly" in res.output

    async def read():
        async with get_client() as client:
            return await client.read_deployment_by_name("retrain/nightly")

    dep = asyncio.run(read())
    assert dep.work_pool_name == "flywheel-pool"
    assert dep.schedules[0].schedule.cron == "0 3 * * *"
    assert dep.parameters["stage"] == params["stage"] and dep.parameters["only_when_new"] is True
    assert dep.entrypoint == "pipelines/flows/retrain.py:retrain"


def test_a_turn_re_evaluates_prompt_track_cases_with_the_offline_enhancer(tmp_path, harness):
    """A case routed to the prompt track (here by an annotator) gets rewrite pairs in the turn's tracks step,
    and the turn re-evaluates that case's prompt with the enhancer built from them, before vs after."""
    from flywheel.badcases.schema import BadCase

    params = _setup(tmp_path)
    ws = Path(str(params["workspace"]))
    store = BadCaseStore.for_workspace(ws)
    store.ingest(
        [
            BadCase(
                content_key="feedback:red-circle",
                kind="bad",
                source="feedback",
                prompt="a red circle on a white background",
                origin="test",
                complaint="the circle is not red",
            )
        ]
    )
    case = store.list(track="unrouted")[0]
    store.decide(case["case_id"], "prompt", by="tester")
    out = retrain(**params)
    assert out["status"] == "done", out
    turn = list_turns(__import__("flywheel.workspace", fromlist=["Workspace"]).Workspace.at(ws))[0]
    rewrite = turn.steps["prompt_rewrite"]
    assert rewrite["pairs"] >= 1 and rewrite["prompts"] == ["s"], rewrite
    assert rewrite["before"]["outputs"] == rewrite["after"]["outputs"] == 2  # prompt s x seeds 0, 1
    asked = rewrite["rewrites"]["a red circle on a white background"]
    assert asked and asked != "a red circle on a white background" and "red circle" in asked
    assert rewrite["pass_rate_delta"] == rewrite["after"]["pass_rate"] - rewrite["before"]["pass_rate"]
    report = json.loads((turn.dir / "report.json").read_text())
    assert report["prompt_track"]["after"] == rewrite["after"]
    assert "re-evaluated with the offline enhancer" in (turn.dir / "report.md").read_text()
