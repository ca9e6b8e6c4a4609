"""`flywheel export`: a selection as self-contained Parquet or WebDataset training shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import WorkspaceOpt, console
from pipelines.cli.common import progress_bar as _progress


def register(app: typer.Typer) -> None:
    """Add `export` to `app`."""

    @app.command()
    def export(
        workspace: WorkspaceOpt,
        recipe: Annotated[str, typer.Option(help="Selection to export (a recipe name, or NAME+HASH from --set).")],
        format: Annotated[str, typer.Option("--format", help="parquet or webdataset.")] = "parquet",
        out: Annotated[
            Path | None, typer.Option(help="Output folder (default: WORKSPACE/exports/RECIPE/FORMAT)")
        ] = None,
    ) -> None:
        """Write the kept rows of RECIPE, images included, as shards any reader opens (resumable)."""
        from flywheel.export import export as run_export
        from flywheel.workspace import Workspace

        ws = Workspace.at(workspace)
        with _progress() as progress:
            task = progress.add_task("shards", total=None)
            got = run_export(
                ws, recipe, format, out, progress=lambda done, total: progress.update(task, completed=done, total=total)
            )
        console.print(
            f"exported {got.rows} rows of {got.recipe} as {got.format}: {got.shards_written} shard(s) written, "
            f"{got.shards_skipped} already complete -> {got.out_dir}"
        )
