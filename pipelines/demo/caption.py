"""The demo's caption step: offline OCR text captions of the curated set, a few shown next to their truth."""

from __future__ import annotations

import duckdb
from rich.console import Console
from rich.table import Table

from captioners.config import CaptionConfig
from captioners.types import CAPTION_TYPES
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from pipelines.steps.caption import caption


def caption_demo(ws: Workspace, console: Console, recipe: str = "stage1_256p") -> dict:
    """Caption `recipe` with the default (OCR) config, print the summary and text captions of text images."""
    console.print(
        "captioning (text + structured from offline OCR; general/knowledge need a VLM, see docs/captioners.md)"
    )
    result = caption(
        ws,
        recipe,
        CAPTION_TYPES,
        CaptionConfig.load(),
        log=lambda m: console.print(f"[yellow]{m}[/]"),
    )
    files = [str(p) for p in ShardStore(result.out_dir).shard_paths()]
    query = (
        "SELECT caption, caption_text, ocr_script FROM read_parquet(?) WHERE ocr_text <> '' "
        "ORDER BY list_avg(list_transform(ocr_lines, lambda l: l.conf)) DESC, uri LIMIT 6"
    )
    rows = duckdb.connect().execute(query, [files]).fetchall() if files else []
    table = Table(title="text captions from OCR (raw caption of the render for comparison)")
    for col in ("raw caption", "text caption (OCR)", "script"):
        table.add_column(col, overflow="fold")
    for raw, text, script in rows:
        table.add_row(raw or "", text or "", script or "")
    console.print(table)
    text = result.summary.get("text", {})
    console.print(
        f"text captions: {text.get('ok', 0)} ok of {text.get('rows', 0)}; "
        f"{result.rows_written} rows captioned into {result.out_dir}"
    )
    return {"caption_summary": result.summary, "captioned_dir": str(result.out_dir), "text_captions_shown": len(rows)}
