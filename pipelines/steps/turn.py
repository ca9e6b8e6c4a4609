"""One turn of the flywheel, as plain functions: the turn ledger, what is new, training a turn, the report.

The Prefect flow (`pipelines/flows/retrain.py`) composes these with the existing steps; they live here, not in
the flow, so the CLI, the bench and tests can call them without Prefect.

    WS/turns/turn-NNNN/turn.json    turn number, inputs, status (running | done), every finished step's result
    WS/turns/turn-NNNN/report.json  this turn's evaluation against the last one (report.md: the same as text)
    WS/inbox/sources/<name>         new source data (folder / Parquet / tars) for the next turn to score
    WS/inbox/badcases/<file>        new bad-case files (evaluation Parquet, feedback or mining JSONL/CSV)

Idempotence: a step's result is written into turn.json when it finishes, and a re-run of the turn returns
the recorded result instead of running the step again; the steps themselves are idempotent too (scoring skips
completed shards, bad cases are keyed by content, a turn's training resumes its own checkpoints, tracks are
rewritten from the store). A finished turn is never re-run; a new turn starts only when something is new
(inputs not seen by an earlier turn, unrouted bad cases, or track data the last turn did not train on), unless
the caller asks for one regardless.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.badcases import BadCaseStore
from flywheel.store.shards import ShardStore, write_json_atomic
from flywheel.tracks import registry
from flywheel.tracks.common import TRACK_NAMES, track_dir
from flywheel.workspace import Workspace

TURN_DIR = re.compile(r"^turn-(\d{4,})$")
BADCASE_SUFFIXES = (".parquet", ".jsonl", ".csv")
LogFn = Callable[[str], None]


def turns_dir(ws: Workspace) -> Path:
    return ws.turns_dir


def inbox_dir(ws: Workspace, kind: str) -> Path:
    if kind not in ("sources", "badcases"):
        raise ValueError(f"unknown inbox {kind!r}")
    return ws.root / "inbox" / kind


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def file_digest(path: Path) -> str:
    """Content identity of an input (a file's bytes; a folder's relative names, sizes and mtimes)."""
    h = hashlib.blake2b(digest_size=12)
    if path.is_file():
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    else:
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            st = p.stat()
            h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


@dataclass
class Turn:
    """The ledger of one turn; `record` persists a step's result at once (atomic JSON write)."""

    ws: Workspace
    number: int
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return turns_dir(self.ws) / f"turn-{self.number:04d}"

    @property
    def path(self) -> Path:
        return self.dir / "turn.json"

    @property
    def id(self) -> str:
        return f"turn-{self.number:04d}"

    @property
    def done(self) -> bool:
        return self.data.get("status") == "done"

    @property
    def steps(self) -> dict[str, Any]:
        return self.data.setdefault("steps", {})

    def save(self) -> None:
        write_json_atomic(self.path, self.data)

    def record(self, step: str, result: Any) -> Any:
        self.steps[step] = result
        self.save()
        return result

    def finish(self) -> None:
        self.data["status"] = "done"
        self.data["finished_at"] = _now()
        self.save()

    @classmethod
    def load(cls, ws: Workspace, number: int) -> Turn:
        turn = cls(ws, number)
        if not turn.path.is_file():
            raise FileNotFoundError(f"no turn {number} in {turns_dir(ws)}")
        turn.data = json.loads(turn.path.read_text(encoding="utf-8"))
        return turn


def list_turns(ws: Workspace) -> list[Turn]:
    base = turns_dir(ws)
    if not base.is_dir():
        return []
    numbers = sorted(int(m.group(1)) for p in base.iterdir() if (m := TURN_DIR.match(p.name)))
    return [Turn.load(ws, n) for n in numbers if (base / f"turn-{n:04d}" / "turn.json").is_file()]


def track_fingerprints(ws: Workspace) -> dict[str, str]:
    """sha256 of each track's complete shards: what a turn trained on, to tell whether tracks are new."""
    out = {}
    for track in TRACK_NAMES:
        infos = list(ShardStore(track_dir(ws, track)).infos())
        out[track] = ",".join(f"{i.shard}:{i.sha256}" for i in infos)
    return out


def seen_inputs(turns: list[Turn]) -> set[str]:
    """Digests of every input an earlier turn ingested."""
    seen: set[str] = set()
    for turn in turns:
        seen.update(turn.data.get("inputs", {}).get("digests", {}).values())
    return seen


def new_inputs(ws: Workspace, sources: list[str], badcases: list[str], turns: list[Turn]) -> dict[str, Any]:
    """What this turn would ingest: given inputs and inbox entries no earlier turn ingested, plus counts of
    unrouted bad cases and whether the tracks changed since the last turn trained."""
    seen = seen_inputs(turns)
    inbox_sources = (
        sorted(str(p) for p in inbox_dir(ws, "sources").glob("*")) if inbox_dir(ws, "sources").is_dir() else []
    )
    inbox_cases = (
        sorted(str(p) for p in inbox_dir(ws, "badcases").iterdir() if p.suffix.lower() in BADCASE_SUFFIXES)
        if inbox_dir(ws, "badcases").is_dir()
        else []
    )
    digests: dict[str, str] = {}
    out_sources, out_cases = [], []
    for kind, paths, bucket in (
        ("source", sources + inbox_sources, out_sources),
        ("badcases", badcases + inbox_cases, out_cases),
    ):
        for raw in dict.fromkeys(paths):
            path = Path(raw).expanduser().resolve()
            if not path.exists():
                raise FileNotFoundError(f"{kind} input {raw} does not exist")
            digest = file_digest(path)
            if digest not in seen:
                digests[str(path)] = digest
                bucket.append(str(path))
    store = BadCaseStore.for_workspace(ws.root)
    unrouted = len(store.list(track="unrouted"))
    tracks = track_fingerprints(ws)
    last = turns[-1].data.get("inputs", {}).get("tracks") if turns else None
    return {
        "sources": out_sources,
        "badcases": out_cases,
        "digests": digests,
        "unrouted": unrouted,
        "tracks": tracks,
        "track_rows": {t: track_rows(ws, t) for t in TRACK_NAMES},
        "tracks_changed": last is None or last != tracks,
    }


def anything_new(inputs: dict[str, Any]) -> bool:
    """New inputs, unrouted cases, or changed tracks that hold training data (expansion rows or pairs)."""
    trainable = any(inputs["track_rows"].get(t) for t in registry.training_tracks())
    return bool(
        inputs["sources"] or inputs["badcases"] or inputs["unrouted"] or (inputs["tracks_changed"] and trainable)
    )


def open_turn(
    ws: Workspace,
    sources: list[str],
    badcases: list[str],
    *,
    turn: int | None = None,
    only_when_new: bool = True,
) -> tuple[Turn | None, str]:
    """The turn to run and why: an unfinished one is resumed, `turn=N` re-opens N (a finished turn is
    returned as is: running it adds nothing), otherwise a new turn when something is new (or always when
    `only_when_new` is False). (None, reason) when there is nothing to do."""
    turns = list_turns(ws)
    if turn is not None:
        found = [t for t in turns if t.number == turn]
        if not found:
            raise FileNotFoundError(f"no turn {turn} in {turns_dir(ws)} (turns: {[t.number for t in turns]})")
        return found[0], "re-opened"
    if turns and not turns[-1].done:
        return turns[-1], "resumed (unfinished)"
    inputs = new_inputs(ws, sources, badcases, turns)
    if only_when_new and turns and not anything_new(inputs):
        return None, f"nothing new since {turns[-1].id}: no new source data or bad cases, no new track data to train on"
    number = turns[-1].number + 1 if turns else 1
    t = Turn(ws, number, {"turn": number, "status": "running", "started_at": _now(), "inputs": inputs, "steps": {}})
    t.save()
    return t, "new"


# ---- what to train -------------------------------------------------------------------------------------------
def routed_counts(ws: Workspace) -> dict[str, int]:
    """Bad cases per track (annotator decisions included): what the routed cases call for."""
    counts = BadCaseStore.for_workspace(ws.root).counts()
    return {t: counts.get(f"bad:{t}", 0) for t in TRACK_NAMES}


def track_rows(ws: Workspace, track: str) -> int:
    return sum(i.rows for i in ShardStore(track_dir(ws, track)).infos())


def plan_training(ws: Workspace, has_checkpoint: bool, new_sources: bool) -> dict[str, Any]:
    """Which stages this turn trains, with the reason. Pretrain continues when there is no model yet, new
    source data came in, or cases routed to pretrain found expansion rows (mixed in through `mix:`); the
    preference stage runs when RL cases produced pairs."""
    routed = routed_counts(ws)
    pairs = track_rows(ws, "rl")
    expansion = track_rows(ws, "pretrain")
    pretrain_why = (
        "no checkpoint yet"
        if not has_checkpoint
        else "new source data"
        if new_sources
        else f"{routed['pretrain']} case(s) routed to pretrain, {expansion} expansion row(s)"
        if routed["pretrain"] and expansion
        else None
    )
    dpo_why = f"{routed['rl']} case(s) routed to rl, {pairs} preference pair(s)" if routed["rl"] and pairs else None
    return {"pretrain": pretrain_why, "dpo": dpo_why, "routed": routed, "pairs": pairs, "expansion_rows": expansion}


def latest_checkpoint(ws: Workspace, base_stage: str, turns: list[Turn]) -> str | None:
    """The checkpoint a new turn continues from: the last finished turn's, else the base stage's latest."""
    from trainer.checkpoint import list_checkpoints

    for turn in reversed(turns):
        ckpt = turn.steps.get("train", {}).get("checkpoint")
        if ckpt and Path(ckpt).is_dir():
            return str(ckpt)
    found = list_checkpoints(ws.checkpoints_dir(base_stage))
    return str(found[-1]) if found else None


def train_stage(
    ws: Workspace,
    stage: str,
    name: str,
    init_from: str | None,
    steps: int | None,
    log: LogFn,
) -> dict[str, Any]:
    """Train stage `stage` (a built-in name or YAML) under the turn's own stage name, continuing `init_from`.
    A crashed turn resumes its own checkpoints; a finished one runs no step."""
    from trainer.checkpoint import list_checkpoints
    from trainer.config import load_stage
    from trainer.loop import Trainer

    cfg = load_stage(stage)
    cfg = cfg.replace(name=name, train={"init_from": init_from, **({"steps": steps} if steps else {})})
    trainer = Trainer(cfg, ws, log=log)
    trainer.resume("latest")
    result = trainer.run()
    ckpt = list_checkpoints(trainer.stage_dir)[-1]
    return {
        "stage": name,
        "from": stage,
        "kind": cfg.kind,
        "init_from": init_from,
        "checkpoint": str(ckpt),
        "steps_run": result.steps_run,
        "final_step": result.final_step,
        "first_loss": result.losses[0] if result.losses else None,
        "last_loss": result.losses[-1] if result.losses else None,
        "data": trainer.data_summary(),
    }


# ---- the report ------------------------------------------------------------------------------------------------
def compare(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """Per category: pass rate and mean reward of the last evaluation and of this one, and the change."""
    rows = {}
    cats = sorted(set(after["categories"]) | set((before or {}).get("categories", {})))
    for cat in cats:
        a = after["categories"].get(cat)
        b = (before or {}).get("categories", {}).get(cat)
        row: dict[str, Any] = {"outputs": a["outputs"] if a else 0}
        for key in ("pass_rate", "mean_reward"):
            row[f"{key}_before"] = b[key] if b else None
            row[f"{key}_after"] = a[key] if a else None
            row[f"{key}_delta"] = a[key] - b[key] if a and b else None
        rows[cat] = row
    return {
        "before": (before or {}).get("checkpoint"),
        "after": after["checkpoint"],
        "pass_rate_before": (before or {}).get("pass_rate"),
        "pass_rate_after": after["pass_rate"],
        "categories": rows,
    }


def report_text(turn: Turn, comparison: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def d(v: float | None) -> str:
        return "-" if v is None else f"{v:+.3f}"

    lines = [
        f"# {turn.id}",
        "",
        f"evaluation {comparison['after']} against {comparison['before'] or '(no earlier evaluation)'}",
        "",
        "| category | outputs | pass rate before | after | change | mean reward before | after | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cat, r in comparison["categories"].items():
        lines.append(
            f"| {cat} | {r['outputs']} | {f(r['pass_rate_before'])} | {f(r['pass_rate_after'])} | "
            f"{d(r['pass_rate_delta'])} | {f(r['mean_reward_before'])} | {f(r['mean_reward_after'])} | "
            f"{d(r['mean_reward_delta'])} |"
        )
    train = turn.steps.get("train", {})
    for part in train.get("stages", []):
        lines.append("")
        lines.append(
            f"trained {part['stage']} ({part['kind']}) from {part['init_from']}: {part['steps_run']} steps, "
            f"loss {part['first_loss']} -> {part['last_loss']}; drawn {part['data'].get('drawn')}"
        )
    if train.get("skipped"):
        lines += ["", f"no training: {train['skipped']}"]
    rewrite = comparison.get("prompt_track")
    if rewrite and "after" in rewrite:
        b, a = rewrite["before"], rewrite["after"]
        lines += [
            "",
            f"prompt track: {len(rewrite['prompts'])} routed prompt(s) re-evaluated with the offline enhancer "
            f"({rewrite['pairs']} pairs): pass rate {f(b['pass_rate'])} -> {f(a['pass_rate'])}, "
            f"mean reward {f(b['mean_reward'])} -> {f(a['mean_reward'])}",
        ]
    elif rewrite:
        lines += ["", f"prompt track not re-evaluated: {rewrite['skipped']}"]
    return "\n".join(lines) + "\n"
