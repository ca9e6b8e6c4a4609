"""`flywheel aesthetics fit`: retrain the aesthetic head on a workspace's keep/reject decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import WorkspaceOpt, console, err


def register(app: typer.Typer) -> None:
    """Add the `aesthetics` group to `app`; errors reach the one handler in pipelines.cli."""
    group = typer.Typer(no_args_is_help=True, help="The aesthetic head (filters/aesthetics.py).")
    app.add_typer(group, name="aesthetics")

    @group.command("fit")
    def fit(
        workspace: WorkspaceOpt,
        config: Annotated[
            Path | None, typer.Option(help="Scoring config YAML to base the written config on (not modified).")
        ] = None,
        pool_images: Annotated[
            int, typer.Option(min=0, help="Pool images used as sources of constructed pairs.")
        ] = 200,
        views: Annotated[int, typer.Option(min=1, help="Clean views per source image.")] = 2,
        hidden: Annotated[int, typer.Option(min=0, help="Hidden units of the MLP head (0: linear).")] = 64,
        steps: Annotated[int, typer.Option(min=1, help="Full-batch optimiser steps.")] = 600,
        seed: Annotated[int, typer.Option(help="Seed of views and training (same data + seed = same head).")] = 0,
    ) -> None:
        """Fit a head on WORKSPACE's decisions plus constructed pairs; write it and a config that names it."""
        from flywheel.aesthetics.train import FitConfig
        from pipelines.steps.aesthetics import fit_workspace

        if config is not None and not config.is_file():
            raise typer.BadParameter(f"{config} is not a file", param_hint="--config")
        result = fit_workspace(
            workspace,
            config=config,
            pool_images=pool_images,
            views=views,
            fit=FitConfig(hidden=hidden, steps=steps, seed=seed),
            log=err.print,
        )
        console.print(
            f"head {result.head}: {result.keep} keep / {result.reject} reject verdicts "
            f"({result.verdict_pairs} same-prompt pairs), {result.constructed_pairs} constructed pairs from "
            f"{result.source_images} pool images; in-sample pair accuracy {result.constructed_accuracy:.3f}, "
            f"verdict agreement {result.verdict_agreement:.3f}"
        )
        console.print(
            f"score with: flywheel score-missing -w {workspace} --filters aesthetics --config {result.config}"
        )
