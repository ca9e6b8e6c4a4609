"""`flywheel retrain` (one flywheel turn as a Prefect flow) and `flywheel schedule` (that flow as a deployment)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli.common import WorkspaceOpt, console, err, parse_seeds
from pipelines.cli.common import fail as _fail


def _params(
    workspace: Path,
    sources: list[str] | None,
    badcases: list[str] | None,
    recipe: str,
    stage: str,
    dpo_stage: str,
    steps: int | None,
    dpo_steps: int | None,
    prompts: str,
    seeds: str,
    eval_steps: int,
    index: bool,
) -> dict[str, Any]:
    from flywheel.config import ConfigError
    from trainer.config import load_stage
    from trainer.evaluate.prompts import load_prompt_set

    try:  # check what can be checked before a flow starts, so a typo is one line and exit code 2
        load_stage(stage)
        if load_stage(dpo_stage).kind != "dpo":
            raise ConfigError(f"--dpo-stage {dpo_stage} is not a dpo stage (kind: dpo)")
        load_prompt_set(prompts)
    except ConfigError as exc:
        _fail(str(exc))
    for path in [*(sources or []), *(badcases or [])]:
        if not Path(path).exists():
            _fail(f"input {path} does not exist")
    return {
        "workspace": str(workspace.expanduser().resolve()),
        "sources": [str(Path(s).resolve()) for s in sources or []],
        "badcases": [str(Path(b).resolve()) for b in badcases or []],
        "recipe": recipe,
        "stage": stage,
        "dpo_stage": dpo_stage,
        "steps": steps,
        "dpo_steps": dpo_steps,
        "prompts": prompts,
        "seeds": list(parse_seeds(seeds)),
        "eval_steps": eval_steps,
        "index": index,
    }


SourcesOpt = Annotated[
    list[str] | None, typer.Option("--source", help="New source data to score this turn (repeatable).")
]
BadcasesOpt = Annotated[
    list[str] | None,
    typer.Option("--badcases", help="Bad-case file (evaluation Parquet, feedback/mining JSONL/CSV; repeatable)."),
]
RecipeOpt = Annotated[str, typer.Option(help="Recipe to select (its mix: brings the tracks in).")]
StageOpt = Annotated[str, typer.Option(help="Pretrain stage continued each turn (name or YAML).")]
DpoStageOpt = Annotated[str, typer.Option(help="Preference stage for RL pairs (name or YAML).")]
StepsOpt = Annotated[int | None, typer.Option(min=1, help="Training steps per turn (default: the stage's).")]
DpoStepsOpt = Annotated[int | None, typer.Option(min=1, help="DPO steps per turn (default: the stage's).")]
PromptsOpt = Annotated[str, typer.Option(help="Evaluation prompt set (name or YAML).")]
SeedsOpt = Annotated[str, typer.Option(help="Comma-separated evaluation seeds per prompt.")]
EvalStepsOpt = Annotated[int, typer.Option(min=1, help="Euler steps per evaluation image.")]
IndexOpt = Annotated[bool, typer.Option(help="Index the pool before routing (coverage evidence, expansion).")]


def register(app: typer.Typer) -> None:
    """Add `retrain` and `schedule` to `app`."""

    @app.command()
    def retrain(
        workspace: WorkspaceOpt,
        source: SourcesOpt = None,
        badcases: BadcasesOpt = None,
        recipe: RecipeOpt = "stage1_256p",
        stage: StageOpt = "stage1_tiny_cpu",
        dpo_stage: DpoStageOpt = "rl_dpo",
        steps: StepsOpt = None,
        dpo_steps: DpoStepsOpt = None,
        prompts: PromptsOpt = "default",
        seeds: SeedsOpt = "0,1,2",
        eval_steps: EvalStepsOpt = 20,
        index: IndexOpt = True,
        turn: Annotated[int | None, typer.Option(min=1, help="Re-open turn N (a finished turn adds nothing).")] = None,
        force: Annotated[bool, typer.Option(help="Start a new turn even when nothing is new.")] = False,
    ) -> None:
        """Run one flywheel turn: ingest -> score -> select (mix) -> train (pretrain/DPO) -> evaluate -> route ->
        tracks, with a report against the last turn (WORKSPACE/turns/turn-NNNN/report.md)."""
        from pipelines.flows.retrain import retrain as retrain_flow

        params = _params(
            workspace, source, badcases, recipe, stage, dpo_stage, steps, dpo_steps, prompts, seeds, eval_steps, index
        )
        try:
            out = retrain_flow(**params, turn=turn, only_when_new=not force)
        except FileNotFoundError as exc:
            _fail(str(exc))
        if out["status"] == "skipped":
            console.print(out["reason"])
            return
        console.print(f"{out['turn']}: {out['status']} ({out['reason']})")
        report = out["report"]
        for cat, row in report["categories"].items():
            b, a = row["pass_rate_before"], row["pass_rate_after"]
            console.print(f"  {cat:<8} pass rate {'-' if b is None else f'{b:.3f}'} -> {a:.3f}")
        if out.get("dir"):
            console.print(f"report: {out['dir']}/report.md")

    @app.command()
    def schedule(
        workspace: WorkspaceOpt,
        cron: Annotated[str | None, typer.Option(help="Cron expression, e.g. '0 3 * * *'.")] = None,
        interval: Annotated[float | None, typer.Option(min=1, help="Seconds between turns.")] = None,
        when: Annotated[
            str,
            typer.Option(
                help="new-data: a scheduled turn runs only when source data, bad cases or tracks are new; always."
            ),
        ] = "new-data",
        work_pool: Annotated[
            str | None, typer.Option(help="Deploy to this work pool (needs PREFECT_API_URL); default: serve here.")
        ] = None,
        name: Annotated[str | None, typer.Option(help="Deployment name (default: retrain-<workspace folder>).")] = None,
        recipe: RecipeOpt = "stage1_256p",
        stage: StageOpt = "stage1_tiny_cpu",
        dpo_stage: DpoStageOpt = "rl_dpo",
        steps: StepsOpt = None,
        dpo_steps: DpoStepsOpt = None,
        prompts: PromptsOpt = "default",
        seeds: SeedsOpt = "0,1,2",
        eval_steps: EvalStepsOpt = 20,
        index: IndexOpt = True,
    ) -> None:
        """Register `retrain` as a Prefect deployment on a schedule (one turn at a time: a run that falls due
        while a turn is running waits). New inputs go to WORKSPACE/inbox/sources/
        and WORKSPACE/inbox/badcases/; with --when new-data (default) a scheduled run starts a turn only when
        something is new. Serves locally (blocking) unless PREFECT_API_URL is set and --work-pool given."""
        if (cron is None) == (interval is None):
            _fail("give exactly one of --cron EXPR or --interval SECONDS")
        if when not in ("new-data", "always"):
            _fail(f"--when must be new-data or always, got {when!r}")
        if cron is not None:
            from prefect.client.schemas.schedules import CronSchedule

            try:
                CronSchedule(cron=cron)
            except ValueError as exc:
                _fail(f"--cron {cron!r} is not a valid cron expression ({exc.errors()[0]['msg']})")
        params = _params(
            workspace, None, None, recipe, stage, dpo_stage, steps, dpo_steps, prompts, seeds, eval_steps, index
        )
        params["only_when_new"] = when == "new-data"
        Path(params["workspace"], "inbox", "sources").mkdir(parents=True, exist_ok=True)
        Path(params["workspace"], "inbox", "badcases").mkdir(parents=True, exist_ok=True)
        deployment = name or f"retrain-{Path(params['workspace']).name}"
        schedule_kw: dict[str, Any] = {"cron": cron} if cron is not None else {"interval": interval}
        from pipelines.flows.retrain import retrain as retrain_flow

        if work_pool is not None:
            if not os.environ.get("PREFECT_API_URL"):
                _fail("--work-pool needs a Prefect server: set PREFECT_API_URL (or drop --work-pool to serve here)")
            repo = Path(__file__).resolve().parents[2]
            remote = retrain_flow.from_source(source=str(repo), entrypoint="pipelines/flows/retrain.py:retrain")
            dep_id = remote.deploy(
                name=deployment,
                work_pool_name=work_pool,
                parameters=params,
                build=False,
                push=False,
                concurrency_limit=1,
                **schedule_kw,
            )
            console.print(f"deployed retrain/{deployment} ({dep_id}) to work pool {work_pool}: {schedule_kw}")
            return
        err.print(f"serving retrain/{deployment} {schedule_kw}; inbox: {params['workspace']}/inbox/ (Ctrl-C stops)")
        if os.environ.get("PREFECT_API_URL"):
            retrain_flow.serve(name=deployment, parameters=params, limit=1, global_limit=1, **schedule_kw)
            return
        from prefect.settings import PREFECT_API_URL, temporary_settings

        # Prefect's temporary (ephemeral) API runs no scheduler, so a schedule needs a real server: start one
        # for this workspace (its database under WORKSPACE/.prefect), serve against it, stop it on exit.
        with local_server(Path(params["workspace"]) / ".prefect") as url, temporary_settings({PREFECT_API_URL: url}):
            err.print(f"local Prefect server at {url} (set PREFECT_API_URL to use your own)")
            retrain_flow.serve(name=deployment, parameters=params, limit=1, global_limit=1, **schedule_kw)


@contextlib.contextmanager
def local_server(home: Path, timeout: float | None = None) -> Iterator[str]:
    """A Prefect server (API + scheduler, no UI) on a free loopback port, as a child process of this one."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    url = f"http://127.0.0.1:{port}/api"
    log = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    limit = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
    try:
        deadline = time.time() + limit
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the local Prefect server exited (code {proc.returncode}); see {home}/server.log")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(
                    f"the local Prefect server did not answer within {limit:.0f} s; see {home}/server.log "
                    "(raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS on a loaded machine)"
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
