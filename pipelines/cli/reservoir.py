"""`flywheel reservoir add|list`: score a source into the workspace as a reservoir the pretrain track searches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.common import WorkspaceOpt, console, err


def register(app: typer.Typer) -> None:
    """Add the `reservoir` command group to `app`."""
    group = typer.Typer(no_args_is_help=True, help="Reservoirs: scored, indexed, never curated; searched by expansion.")
    app.add_typer(group, name="reservoir")

    @group.command("add")
    def add(
        source: Annotated[str, typer.Argument(help="Folder of images+captions, Parquet, or WebDataset tars.")],
        workspace: WorkspaceOpt,
        name: Annotated[str | None, typer.Option(help="Reservoir name (default: from the source's folder).")] = None,
        config: Annotated[Path | None, typer.Option(help="Scoring config YAML.")] = None,
        ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    ) -> None:
        """Score SOURCE into WORKSPACE/reservoirs/NAME (pool + index), without curating it."""
        from filters.config import ScoringConfig
        from flywheel.reservoir import default_name, reservoir_workspace
        from flywheel.workspace import Workspace
        from pipelines.steps.reservoir import add_reservoir

        ws = Workspace.at(workspace)
        label = name or default_name(source)
        reservoir_workspace(ws, label)
        got = add_reservoir(
            ws, source, label, ScoringConfig.load(config), ray_address=ray_address, log=lambda m: err.print(m)
        )
        console.print(
            f"reservoir {got.name}: {got.rows} scored rows from {got.source} -> {ws.root / 'reservoirs' / got.name}; "
            f"`flywheel tracks -w {ws.root} --track pretrain` now searches it"
        )

    @group.command("list")
    def list_(workspace: WorkspaceOpt) -> None:
        """The workspace's reservoirs."""
        from flywheel.reservoir import list_reservoirs
        from flywheel.workspace import Workspace

        out = Table(title="reservoirs")
        for col in ("name", "rows", "source", "added"):
            out.add_column(col, overflow="fold")
        for r in list_reservoirs(Workspace.at(workspace)):
            out.add_row(r.name, str(r.rows), r.source, r.added_at)
        console.print(out)
