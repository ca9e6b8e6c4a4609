"""The `retrain` flow: one turn of the flywheel, end to end, and the deployment that runs it on a schedule.

    ingest new source data and bad cases -> score -> select (with mix) -> continue training from the latest
    checkpoint (pretrain and/or the DPO stage, as the routed cases call for) -> evaluate -> ingest the new
    bad cases -> index -> route -> tracks -> re-evaluate the prompt track's cases with the offline enhancer
    (when the prompt track has pairs) -> report (this turn's evaluation against the last one)

Every step is a Prefect task that first looks in the turn's ledger (`pipelines.steps.turn`): a step that
finished in an earlier attempt returns its recorded result, so a retried, resumed or re-run turn adds nothing
twice. The steps reuse the curate flow's `score`/`select` and the cycle flow's `index`/`route`/`expand`
functions. Locally Prefect starts a temporary API (no server); with PREFECT_API_URL set the same flow runs
against that server, and `flywheel schedule` deploys it to a work pool there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task

from flywheel.workspace import Workspace
from pipelines.steps import turn as turns


def _ws(workspace: str) -> Workspace:
    return Workspace.at(workspace)


def _once(turn: turns.Turn, step: str) -> Any | None:
    """The recorded result of `step` in this turn, if it already finished."""
    return turn.steps.get(step)


@task(name="ingest")
def ingest_step(workspace: str, turn_no: int, filters: list[str] | None, rows_per_partition: int) -> dict[str, Any]:
    """Score new source data into the pool and ingest new bad-case files (both idempotent)."""
    from dataclasses import asdict

    from flywheel.badcases import BadCaseStore, ingest_file

    turn = turns.Turn.load(_ws(workspace), turn_no)
    if (done := _once(turn, "ingest")) is not None:
        return done
    logger = get_run_logger()
    inputs = turn.data["inputs"]
    scored = []
    if inputs["sources"]:
        from filters.config import ScoringConfig
        from pipelines.steps.score import score as run_score

        for source in inputs["sources"]:
            result = run_score(
                source,
                _ws(workspace),
                filters=filters,
                cfg=ScoringConfig.load(None),
                rows_per_partition=rows_per_partition,
                log=logger.warning,
            )
            scored.append({"source": source, "rows_written": result.rows_written, "written": result.written})
    store = BadCaseStore.for_workspace(_ws(workspace).root)
    cases = {p: asdict(ingest_file(store, Path(p)).result) for p in inputs["badcases"]}
    return turn.record("ingest", {"scored": scored, "badcases": cases})


@task(name="select")
def select_step(workspace: str, turn_no: int, recipe: str) -> dict[str, Any]:
    from pipelines.flows.curate import select_task

    turn = turns.Turn.load(_ws(workspace), turn_no)
    if (done := _once(turn, "select")) is not None:
        return done
    if not _ws(workspace).pool.shard_paths():
        return turn.record("select", {"skipped": "no scored pool: training reads the curated shards already there"})
    result = select_task.fn(workspace, recipe, None)
    return turn.record("select", {"funnel": result["funnel"], "out_dir": result["out_dir"]})


@task(name="train")
def train_step(
    workspace: str, turn_no: int, stage: str, dpo_stage: str, steps: int | None, dpo_steps: int | None
) -> dict[str, Any]:
    from trainer.config import load_stage

    ws = _ws(workspace)
    turn = turns.Turn.load(ws, turn_no)
    if (done := _once(turn, "train")) is not None:
        return done
    logger = get_run_logger()
    earlier = [t for t in turns.list_turns(ws) if t.number < turn_no]
    base = load_stage(stage).name
    start = turns.latest_checkpoint(ws, base, earlier)
    plan = turns.plan_training(ws, start is not None, bool(turn.steps.get("ingest", {}).get("scored")))
    logger.info("training plan: %s", plan)
    parts = []
    ckpt = start
    if plan["pretrain"]:
        part = turns.train_stage(ws, stage, f"{base}-{turn.id}", ckpt, steps, logger.info)
        parts.append({**part, "why": plan["pretrain"]})
        ckpt = part["checkpoint"]
    if plan["dpo"] and ckpt is not None:
        dpo_base = load_stage(dpo_stage).name
        part = turns.train_stage(ws, dpo_stage, f"{dpo_base}-{turn.id}", ckpt, dpo_steps, logger.info)
        parts.append({**part, "why": plan["dpo"]})
        ckpt = part["checkpoint"]
    result: dict[str, Any] = {"plan": plan, "stages": parts, "start": start, "checkpoint": ckpt}
    if not parts:
        result["skipped"] = "the routed cases call for no training (no expansion rows, no preference pairs)"
    return turn.record("train", result)


def _evaluate(ws: Workspace, checkpoint: str, prompts: str, seeds: list[int], steps: int) -> dict[str, Any]:
    from trainer.evaluate.prompts import load_prompt_set
    from trainer.evaluate.run import EvalSettings
    from trainer.evaluate.run import evaluate as run_evaluate
    from trainer.generate import load_pipeline

    pipe = load_pipeline(Path(checkpoint))
    out = ws.evaluations_dir / pipe.checkpoint.name
    if (out / "summary.json").is_file() and (out / "results.parquet").is_file():
        import json

        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        if summary.get("seeds") == list(seeds) and summary.get("steps") == steps:
            return {"dir": str(out), "summary": summary, "reused": True}
    result = run_evaluate(
        pipe, load_prompt_set(prompts), ws.evaluations_dir, EvalSettings(seeds=tuple(seeds), steps=steps)
    )
    return {"dir": str(result.out_dir), "summary": result.summary, "reused": False}


@task(name="baseline")
def baseline_step(workspace: str, turn_no: int, prompts: str, seeds: list[int], eval_steps: int) -> dict[str, Any]:
    """The evaluation this turn is compared with: the last turn's, else the starting checkpoint's."""
    ws = _ws(workspace)
    turn = turns.Turn.load(ws, turn_no)
    if (done := _once(turn, "baseline")) is not None:
        return done
    earlier = [t for t in turns.list_turns(ws) if t.number < turn_no and t.steps.get("evaluate")]
    if earlier:
        ev = earlier[-1].steps["evaluate"]
        return turn.record("baseline", {"from": earlier[-1].id, **ev})
    start = turn.steps.get("train", {}).get("start")
    if start is None:
        return turn.record("baseline", {"from": None, "summary": None})
    return turn.record("baseline", {"from": "start", **_evaluate(ws, start, prompts, seeds, eval_steps)})


@task(name="evaluate")
def evaluate_step(workspace: str, turn_no: int, prompts: str, seeds: list[int], eval_steps: int) -> dict[str, Any]:
    ws = _ws(workspace)
    turn = turns.Turn.load(ws, turn_no)
    if (done := _once(turn, "evaluate")) is not None:
        return done
    ckpt = turn.steps["train"].get("checkpoint")
    if ckpt is None:
        raise RuntimeError("there is no checkpoint to evaluate: the workspace has no model and no curated data")
    return turn.record("evaluate", _evaluate(ws, ckpt, prompts, seeds, eval_steps))


@task(name="ingest-evaluation")
def ingest_eval_step(workspace: str, turn_no: int) -> dict[str, Any]:
    from dataclasses import asdict

    from flywheel.badcases import BadCaseStore, ingest_file

    ws = _ws(workspace)
    turn = turns.Turn.load(ws, turn_no)
    if (done := _once(turn, "ingest_evaluation")) is not None:
        return done
    results = Path(turn.steps["evaluate"]["dir"]) / "results.parquet"
    report = ingest_file(BadCaseStore.for_workspace(ws.root), results, "evaluation")
    return turn.record("ingest_evaluation", asdict(report.result))


@task(name="route-and-tracks")
def loop_step(workspace: str, turn_no: int, index: bool, mode: str, ray_address: str | None) -> dict[str, Any]:
    """Index the pool (when asked), route the unrouted cases and rewrite the tracks (the cycle flow's steps)."""
    from pipelines.flows.cycle import expand_task, index_task, route_task
    from pipelines.steps.loop import engine_for, write_tracks

    ws = _ws(workspace)
    turn = turns.Turn.load(ws, turn_no)
    if (done := _once(turn, "route_tracks")) is not None:
        return done
    out: dict[str, Any] = {}
    if index and ws.pool.shard_paths():
        out["index"] = index_task.fn(workspace, ray_address)
    out["route"] = route_task.fn(workspace, mode)
    if engine_for(ws) is not None:
        out["tracks"] = expand_task.fn(workspace)
    else:  # expansion retrieves from the index; without one only the RL and prompt tracks can be written
        from flywheel.tracks import registry

        out["tracks"] = write_tracks(ws, tuple(t for t in registry.data_tracks() if t != "pretrain")).as_dict()
        out["note"] = "no retrieval index: the pretrain track was not written"
    out["track_rows"] = {t: turns.track_rows(ws, t) for t in turns.TRACK_NAMES}
    return turn.record("route_tracks", out)


def prompt_cases_in_set(ws: Workspace, prompts: str) -> tuple[Any, list[str]]:
    """The evaluation prompts that cases routed to the prompt track are about (by prompt id, else by the
    prompt's text), as a PromptSet, and those cases' ids."""
    from flywheel.badcases import BadCaseStore
    from trainer.evaluate.prompts import PromptSet, load_prompt_set

    full = load_prompt_set(prompts)
    cases = BadCaseStore.for_workspace(ws.root).list(track="prompt")
    ids = {c["prompt_id"] for c in cases if c.get("prompt_id")}
    texts = {" ".join(c["prompt"].split()).lower() for c in cases}
    chosen = [p for p in full.prompts if p.id in ids or " ".join(p.prompt.split()).lower() in texts]
    return PromptSet(f"{full.name}-prompt-track", chosen), [c["case_id"] for c in cases]


def _rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "outputs": len(rows),
        "pass_rate": sum(bool(r["passed"]) for r in rows) / len(rows) if rows else None,
        "mean_reward": sum(float(r["reward"]) for r in rows) / len(rows) if rows else None,
    }


@task(name="prompt-rewrite")
def prompt_step(workspace: str, turn_no: int, prompts: str, seeds: list[int], eval_steps: int) -> dict[str, Any]:
    """Re-evaluate the prompts of cases routed to the prompt track with the offline enhancer built from the
    track's pairs, and compare with the same prompts and seeds evaluated plainly in this turn: the prompt
    track's effect is a change in what the model is asked, so it is measured without retraining."""
    import pyarrow.parquet as pq

    from flywheel.enhancer import OfflineEnhancer
    from flywheel.tracks.common import track_dir
    from trainer.evaluate.run import EvalSettings
    from trainer.evaluate.run import evaluate as run_evaluate
    from trainer.generate import load_pipeline

    ws = _ws(workspace)
    turn = turns.Turn.load(ws, turn_no)
    if (done := _once(turn, "prompt_rewrite")) is not None:
        return done
    pairs = turns.track_rows(ws, "prompt")
    if not pairs:
        return turn.record("prompt_rewrite", {"skipped": "the prompt track has no rewrite pairs"})
    subset, case_ids = prompt_cases_in_set(ws, prompts)
    if not subset.prompts:
        return turn.record(
            "prompt_rewrite",
            {"skipped": f"none of the {len(case_ids)} prompt-track case(s) is a prompt of the evaluation set"},
        )
    enhancer = OfflineEnhancer.from_track(track_dir(ws, "prompt"))
    pipe = load_pipeline(Path(turn.steps["train"]["checkpoint"]))
    result = run_evaluate(
        pipe,
        subset,
        ws.root / "evaluations" / "enhanced",
        EvalSettings(seeds=tuple(seeds), steps=eval_steps, enhancer=enhancer),
        log=get_run_logger().info,
    )
    wanted = {p.id for p in subset.prompts}
    plain = pq.read_table(Path(turn.steps["evaluate"]["dir"]) / "results.parquet").to_pylist()
    plain = [r for r in plain if r["prompt_id"] in wanted]
    enhanced = pq.read_table(result.out_dir / "results.parquet").to_pylist()
    rewrites = {r["prompt"]: r["enhanced_prompt"] for r in enhanced}
    before, after = _rates(plain), _rates(enhanced)
    out = {
        "pairs": pairs,
        "cases": len(case_ids),
        "prompts": sorted(wanted),
        "rewrites": rewrites,
        "dir": str(result.out_dir),
        "before": before,
        "after": after,
        "pass_rate_delta": (after["pass_rate"] - before["pass_rate"]) if before["outputs"] else None,
        "mean_reward_delta": (after["mean_reward"] - before["mean_reward"]) if before["outputs"] else None,
    }
    return turn.record("prompt_rewrite", out)


@task(name="report")
def report_step(workspace: str, turn_no: int) -> dict[str, Any]:
    from flywheel.store.shards import write_json_atomic

    ws = _ws(workspace)
    turn = turns.Turn.load(ws, turn_no)
    if (done := _once(turn, "report")) is not None:
        return done
    comparison = turns.compare(turn.steps["baseline"].get("summary"), turn.steps["evaluate"]["summary"])
    if "prompt_rewrite" in turn.steps:
        comparison["prompt_track"] = turn.steps["prompt_rewrite"]
    write_json_atomic(turn.dir / "report.json", comparison)
    (turn.dir / "report.md").write_text(turns.report_text(turn, comparison), encoding="utf-8")
    turn.record("report", comparison)
    turn.finish()
    return comparison


@flow(name="retrain")
def retrain(
    workspace: str,
    sources: list[str] | None = None,
    badcases: list[str] | None = None,
    recipe: str = "stage1_256p",
    stage: str = "stage1_tiny_cpu",
    dpo_stage: str = "rl_dpo",
    steps: int | None = None,
    dpo_steps: int | None = None,
    prompts: str = "default",
    seeds: list[int] | None = None,
    eval_steps: int = 20,
    index: bool = True,
    mode: str = "rules",
    filters: list[str] | None = None,
    rows_per_partition: int = 256,
    turn: int | None = None,
    only_when_new: bool = True,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """One flywheel turn over WORKSPACE (see the module docstring); returns the turn's id, status and report."""
    ws = _ws(workspace)
    current, why = turns.open_turn(ws, sources or [], badcases or [], turn=turn, only_when_new=only_when_new)
    logger = get_run_logger()
    if current is None:
        logger.info(why)
        return {"turn": None, "status": "skipped", "reason": why}
    logger.info("%s: %s", current.id, why)
    if current.done:
        return {"turn": current.id, "status": "done", "reason": "already finished", "report": current.steps["report"]}
    n = current.number
    seed_list = seeds or [0, 1, 2]
    ingest_step(workspace, n, filters, rows_per_partition)
    select_step(workspace, n, recipe)
    train_step(workspace, n, stage, dpo_stage, steps, dpo_steps)
    baseline_step(workspace, n, prompts, seed_list, eval_steps)
    evaluate_step(workspace, n, prompts, seed_list, eval_steps)
    ingest_eval_step(workspace, n)
    loop_step(workspace, n, index, mode, ray_address)
    prompt_step(workspace, n, prompts, seed_list, eval_steps)
    report = report_step(workspace, n)
    return {"turn": current.id, "status": "done", "reason": why, "report": report, "dir": str(current.dir)}
