"""The loop part of `flywheel demo`: index the pool, ingest bad cases, route them, write each track's data."""

from __future__ import annotations

from dataclasses import asdict

from rich.console import Console
from rich.table import Table

import flywheel.workspace
from flywheel.badcases import BadCaseStore, ingest_file
from flywheel.models.embedders import MiniLMTextEmbedder
from pipelines.demo.loop_fixture import build_fixture
from pipelines.steps.index import build_index
from pipelines.steps.loop import route, write_tracks


def loop_demo(ws: flywheel.workspace.Workspace, console: Console) -> dict:
    console.print("indexing the pool (EfficientNet-Lite0 images, MiniLM captions; LanceDB under index/)")
    index = build_index(ws, log=lambda m: console.print(f"[yellow]{m}[/]"))
    for t in index.tables:
        console.print(f"  {t.table}: {t.rows} rows ({t.embedded} new), space {t.space}")
    eval_path, fb_path = build_fixture(ws, ws.root / "demo-badcases")
    console.print(
        f"ingesting bad cases: {eval_path.name} (CONSTRUCTED DEMO FIXTURE from the demo's own images, "
        f"not model outputs) and {fb_path.name}"
    )
    store = BadCaseStore.for_workspace(ws.root)
    ingested = {p.name: asdict(ingest_file(store, p).result) for p in (eval_path, fb_path)}
    text = MiniLMTextEmbedder()
    summary = route(ws, text_embedder=text)
    out = Table(title="routed bad cases")
    for col in ("case", "source", "prompt", "track", "rule"):
        out.add_column(col, overflow="fold")
    for case in store.list(kind="bad"):
        ev = case["evidence"] or {}
        out.add_row(case["case_id"], case["source"], case["prompt"][:60], case["track"] or "-", ev.get("rule", "-"))
    console.print(out)
    tracks = write_tracks(ws, text_embedder=text)
    console.print(
        f"pretrain: {tracks.pretrain['written']} expansion rows from {tracks.pretrain['candidates']} "
        f"candidates (by provenance {tracks.pretrain['by_provenance']}) -> {tracks.pretrain['path']}"
    )
    console.print(
        f"rl: {tracks.rl['pairs']} preference pairs ({tracks.rl['unpaired_cases']} case(s) without "
        f"sibling outputs) -> {tracks.rl['path']}"
    )
    console.print(f"prompt: {tracks.prompt['pairs']} rewrite pairs -> {tracks.prompt['path']}")
    console.print(f"next: flywheel badcases list -w {ws.root}   |   flywheel search -w {ws.root} --text 'a cat'")
    return {
        "index": [asdict(t) for t in index.tables],
        "ingested": ingested,
        "route": asdict(summary),
        "tracks": tracks.as_dict(),
    }
