"""`flywheel demo`: build a small real corpus offline, score it, select stage 1, show the funnel."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from corpus.build import build_corpus
from filters.config import ScoringConfig
from filters.registry import column_owners
from flywheel.recipes import load_recipe
from flywheel.select import select
from flywheel.workspace import Workspace
from pipelines.demo.caption import caption_demo
from pipelines.demo.loop import loop_demo
from pipelines.steps.reservoir import add_reservoir
from pipelines.steps.score import score

# The concept the demo keeps out of its pool and puts in a reservoir: renders of Thai script. Its feedback
# case ("it doesn't know Thai script") routes to pretrain, and expansion must retrieve them from there.
HELD_OUT_SCRIPT = "Thai"


def hold_out_concept(corpus_dir: Path, reservoir_dir: Path, *, script: str) -> int:
    """Move the corpus images (and caption files) of one script into `reservoir_dir`; idempotent."""
    import json

    reservoir_dir.mkdir(parents=True, exist_ok=True)
    images = corpus_dir / "images"
    moved = 0
    for line in (corpus_dir / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("script") != script:
            continue
        for name in (row["file"], Path(row["file"]).with_suffix(".txt").name):
            src = images / name
            if src.is_file():
                src.rename(reservoir_dir / name)
        moved += (reservoir_dir / row["file"]).is_file()
    return moved


def run_demo(
    workspace: Path,
    *,
    scale: int = 1,
    console: Console | None = None,
    cfg: ScoringConfig | None = None,
    captions: bool = False,
) -> dict[str, object]:
    console = console or Console()
    ws = Workspace.at(workspace)
    corpus_dir = ws.root / "demo-corpus"
    if (corpus_dir / "labels.jsonl").is_file():
        console.print(f"reusing the demo corpus in {corpus_dir}")
        images = corpus_dir / "images"
    else:
        console.print(f"building the demo corpus in {corpus_dir} (photos, multilingual text renders, broken files)")
        info = build_corpus(corpus_dir, scale=scale)
        images = info.images_dir
    held_out = hold_out_concept(corpus_dir, ws.root / "demo-reservoir", script=HELD_OUT_SCRIPT)
    console.print(
        f"held out of the pool: {held_out} {HELD_OUT_SCRIPT}-script renders -> {ws.root / 'demo-reservoir'} "
        "(a reservoir: the curated set lacks the concept, the pretrain track has to find it)"
    )
    console.print("scoring (Ray Data; completed shards are skipped on a re-run)")
    result = score(
        str(images),
        ws,
        cfg=cfg or ScoringConfig.load(),
        rows_per_partition=64,
        log=lambda m: console.print(f"[yellow]{m}[/]"),
    )
    console.print(f"pool: {result.rows_written} new rows, {result.skipped} shard(s) reused, {result.seconds:.1f}s")
    selection = select(ws, load_recipe("stage1_256p"), known_columns=column_owners())
    selection.funnel.check()
    console.print(selection.funnel.to_text(), highlight=False, soft_wrap=True)
    console.print("scoring the held-out renders as reservoir demo-held-out (scored and indexed, never curated)")
    reservoir = add_reservoir(
        ws, str(ws.root / "demo-reservoir"), "demo-held-out", cfg or ScoringConfig.load(), rows_per_partition=64
    )
    console.print(f"reservoir {reservoir.name}: {reservoir.rows} rows")
    # OCR captioning runs several tesseract passes per image (minutes on 2 cores), so it is opt-in here.
    caption_report = caption_demo(ws, console) if captions else None
    console.print("the flywheel loop: index the pool, ingest bad cases, route them, write each track's data")
    loop = loop_demo(ws, console)
    console.print(
        f"next: flywheel rejected --workspace {ws.root} --reason near_dup   |   "
        f"flywheel select --workspace {ws.root} --set entropy.min=2.0"
    )
    return {"funnel": selection.funnel.to_json(), "workspace": str(ws.root), "loop": loop, "captions": caption_report}
