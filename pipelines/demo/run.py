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
from pipelines.steps.score import score


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
    # OCR captioning runs several tesseract passes per image (minutes on 2 cores), so it is opt-in here.
    caption_report = caption_demo(ws, console) if captions else None
    console.print("the flywheel loop: index the pool, ingest bad cases, route them, write each track's data")
    loop = loop_demo(ws, console)
    console.print(
        f"next: flywheel rejected --workspace {ws.root} --reason near_dup   |   "
        f"flywheel select --workspace {ws.root} --set entropy.min=2.0"
    )
    return {"funnel": selection.funnel.to_json(), "workspace": str(ws.root), "loop": loop, "captions": caption_report}
