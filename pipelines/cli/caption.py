"""`flywheel` commands of the caption part; `register` adds them to the main Typer app in pipelines/cli/__init__.py.

flywheel caption --workspace WS --recipe stage1_256p [--types text,structured] [--backend ocr] [--config c.yaml]
flywheel synth --out DIR --n 200 [--kinds pure,compositional,complex] [--scripts Latn,Hani] [--seed 0]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.common import WorkspaceOpt, console, err
from pipelines.cli.common import progress_bar as _progress


def summary_table(summary: dict[str, object], title: str) -> Table:
    """Produced / repaired / failed / not produced per caption type, with the top post-check flags."""
    table = Table(title=title)
    for col in ("type", "rows", "ok", "repaired", "failed", "error", "not produced", "flags", "first error"):
        table.add_column(col, overflow="fold")
    for kind, entry in summary.items():
        if kind == "caption_split" or not isinstance(entry, dict):
            continue
        flags = ", ".join(f"{k}={v}" for k, v in list(entry.get("flags", {}).items())[:4])
        table.add_row(
            kind,
            *(str(entry.get(k, 0)) for k in ("rows", "ok", "repaired", "failed", "error", "not_produced")),
            flags,
            str(entry.get("error_example") or "")[:160],
        )
    return table


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""

    @app.command()
    def caption(
        workspace: WorkspaceOpt,
        recipe: Annotated[
            str, typer.Option(help="Curated selection to caption (WORKSPACE/curated/NAME).")
        ] = "stage1_256p",
        types: Annotated[
            str | None,
            typer.Option(help="Comma-separated caption types: general,text,knowledge,structured (default: all four)."),
        ] = None,
        backend: Annotated[
            str | None,
            typer.Option(help="Use this backend (ocr, transformers, openai) for every requested type it can produce."),
        ] = None,
        config: Annotated[
            Path | None, typer.Option(help="Caption config YAML (backends per type, model paths, endpoint).")
        ] = None,
        ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: local Ray).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Caption a curated selection into WORKSPACE/captioned/RECIPE/ (resumable; finished shards are skipped)."""
        from captioners.config import CaptionConfig
        from captioners.types import parse_types
        from flywheel.workspace import Workspace
        from pipelines.steps.caption import caption as run_caption

        ws = Workspace.at(workspace)
        kinds = parse_types(types)
        cfg = CaptionConfig.load(config)
        if backend:
            cfg = cfg.with_backend(backend, kinds)
        with _progress() as progress:
            task = progress.add_task("shards", total=None)
            result = run_caption(
                ws,
                recipe,
                kinds,
                cfg,
                ray_address=ray_address,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                log=lambda m: err.print(f"[yellow]{m}[/]"),
            )
        if json_out:
            console.print_json(json.dumps(result.summary))
            return
        console.print(summary_table(result.summary, f"captions of {recipe}"))
        console.print(
            f"captioned {result.rows_written} rows in {result.written} new shard(s); {result.skipped} "
            f"shard(s) already complete; {result.seconds:.1f}s -> {result.out_dir}"
        )
        for kind, entry in result.summary.items():
            if isinstance(entry, dict) and entry.get("not_produced"):
                console.print(f"[yellow]{kind}: not produced: {entry.get('error_example')}[/]")

    @app.command()
    def synth(
        out: Annotated[Path, typer.Option("--out", help="Folder to write images + JSON sidecars into.")],
        n: Annotated[int, typer.Option("--n", min=1, help="How many images to render.")] = 100,
        kinds: Annotated[
            str, typer.Option(help="Comma-separated: pure, compositional, complex.")
        ] = "pure,compositional,complex",
        scripts: Annotated[
            str | None,
            typer.Option(
                help="Comma-separated ISO 15924 codes (default: all with a "
                "font here), e.g. Latn,Hani,Jpan,Kore,Arab,Deva."
            ),
        ] = None,
        seed: Annotated[int, typer.Option(help="Random seed (same seed, same images).")] = 0,
    ) -> None:
        """Render synthetic text images with exact ground-truth captions: a folder `flywheel score` ingests."""
        from captioners.synth.writer import write_synth

        report = write_synth(
            out,
            n,
            kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
            scripts=tuple(s.strip() for s in scripts.split(",")) if scripts else None,
            seed=seed,
        )
        table = Table(title=f"synthetic text images in {out}")
        for col in ("kind", "script", "images"):
            table.add_column(col)
        for (kind, script), count in sorted(report.counts.items()):
            table.add_row(kind, script, str(count))
        console.print(table)
        console.print(
            f"wrote {report.written} image(s) with .json sidecars ({report.seconds:.1f}s); "
            f"score them with: flywheel score {out} --workspace WS"
        )
        for message in report.warnings:
            console.print(f"[yellow]{message}[/]")
