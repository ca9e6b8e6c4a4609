"""`flywheel mine`: probe prompts near each confirmed failure with the latest checkpoint, and list data suspects.

The core (flywheel.mining) picks probes and data suspects; this step renders and scores the probes with the
trainer's evaluation (same rewards and tags as `flywheel evaluate`), writes them under
`WS/mining/<run>/<checkpoint>/results.parquet`, ingests the mined cases (`source = mining`) and writes
`WS/mining/<run>/report.json` with each failure's reach.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flywheel.badcases.store import BadCaseStore
from flywheel.mining import (
    MiningConfig,
    Probe,
    confirmed_failures,
    data_suspects,
    probe_cases,
    probe_prompts,
    prompt_bank,
    reach,
    reach_json,
)
from flywheel.models.embedders import MiniLMTextEmbedder
from flywheel.store.shards import write_json_atomic
from flywheel.workspace import Workspace
from pipelines.steps.loop import engine_for


@dataclass
class MineReport:
    run: str
    failures: int
    probes: int
    probe_outputs: int = 0
    probe_cases_added: int = 0
    suspects_added: int = 0
    reach: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report_path: str = ""


def _eval_prompts(probes: list[Probe]) -> Any:
    """Probes as an evaluation prompt set. An expectation the evaluator cannot score (a label that is no
    ImageNet class, e.g. a feedback case's free-text concept) is dropped: the probe is scored as a scene."""
    from flywheel.models.efficientnet_lite import IMAGENET_CLASSES
    from trainer.evaluate.prompts import EvalPrompt, PromptSet

    seen: dict[str, EvalPrompt] = {}
    for p in probes:
        label = p.expected_label if p.expected_label in IMAGENET_CLASSES else None
        text = (
            p.expected_text
            if p.expected_text and any(ch.isalnum() and ch.isascii() for ch in p.expected_text)
            else None
        )
        category = "object" if label else "text" if text else "scene"
        seen.setdefault(
            p.prompt,
            EvalPrompt(id=p.prompt_id, category=category, prompt=p.prompt, expected_text=text, expected_label=label),
        )
    return PromptSet("mining-probes", list(seen.values()))


def _bank_from_prompt_sets(names: list[str]) -> list[dict[str, Any]]:
    from trainer.evaluate.prompts import load_prompt_set

    out = []
    for name in names:
        for p in load_prompt_set(name).prompts:
            out.append({**asdict(p), "prompt_id": p.id})
    return out


def mine(
    ws: Workspace,
    *,
    checkpoint: str | None = "stage1_tiny_cpu",
    prompt_sets: tuple[str, ...] = ("default",),
    seeds: tuple[int, ...] = (0, 1),
    steps: int = 8,
    cfg: MiningConfig | None = None,
    probes: bool = True,
    suspects: bool = True,
    device: str | None = None,
    text_embedder: MiniLMTextEmbedder | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> MineReport:
    cfg = cfg or MiningConfig()
    store = BadCaseStore.for_workspace(ws.root)
    run = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_root = ws.root / "mining" / run
    failures = confirmed_failures(store)
    report = MineReport(run=run, failures=len(failures), probes=0)
    if not failures:
        report.notes.append("no routed (confirmed) bad cases to mine: run `flywheel route` first")
        write_json_atomic(out_root / "report.json", asdict(report))
        report.report_path = str(out_root / "report.json")
        return report
    text = text_embedder or MiniLMTextEmbedder()
    engine = engine_for(ws)
    if engine is None:
        report.notes.append("no index: probes come from the prompt bank only and no data suspects are listed")
    if probes and failures:
        bank = prompt_bank(store, _bank_from_prompt_sets(list(prompt_sets)))
        chosen = probe_prompts(failures, bank, text, engine, cfg)
        report.probes = len(chosen)
        if chosen and checkpoint is not None:
            rows = _render(ws, chosen, checkpoint, seeds, steps, device, out_root, log)
            report.probe_outputs = len(rows)
            added = store.ingest(probe_cases(store, chosen, rows, run))
            report.probe_cases_added = added.added
            report.reach = reach_json(reach(failures, chosen, rows))
        elif chosen:
            report.notes.append("no checkpoint given: probes listed, not rendered")
    if suspects and failures and engine is not None:
        report.suspects_added = store.ingest(data_suspects(ws, store, failures, text, engine, cfg, run)).added
    report.report_path = str(out_root / "report.json")
    write_json_atomic(out_root / "report.json", asdict(report))
    return report


def _render(
    ws: Workspace,
    chosen: list[Probe],
    checkpoint: str,
    seeds: tuple[int, ...],
    steps: int,
    device: str | None,
    out_root: Path,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    from trainer.checkpoint import resolve_checkpoint
    from trainer.evaluate.run import EvalSettings, evaluate
    from trainer.generate import load_pipeline

    pipe = load_pipeline(resolve_checkpoint(ws.root, checkpoint), device=device)
    result = evaluate(pipe, _eval_prompts(chosen), out_root, EvalSettings(seeds=seeds, steps=steps), log=log)
    return pq.read_table(result.out_dir / "results.parquet").to_pylist()
