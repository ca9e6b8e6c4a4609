"""The `flywheel` command line: score, select, rejected, filters, demo, curate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from flywheel.errors import FlywheelError
from pipelines.cli.common import WorkspaceOpt, console, err
from pipelines.cli.common import fail as _fail
from pipelines.cli.common import progress_bar as _progress


class _FlywheelGroup(TyperGroup):
    """The one place a command's FlywheelError becomes an exit: UserError -> 2, RunFailed -> 1, one line each.

    It wraps every command and sub-group (they run inside this group's `invoke`), so `main()`, `python -m
    pipelines.cli` and typer's CliRunner all see the same exit codes. Anything that is not a FlywheelError is a
    bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FlywheelError as exc:
            _fail(str(exc), code=exc.exit_code)
            raise  # unreachable: _fail raises typer.Exit


app = typer.Typer(
    cls=_FlywheelGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Curate image-text training data: score a pool, select stages, inspect rejections.",
)


@app.command()
def score(
    source: Annotated[str, typer.Argument(help="Folder of images+captions, Parquet file/folder, or WebDataset tars.")],
    workspace: WorkspaceOpt,
    filters: Annotated[str | None, typer.Option(help="Comma-separated filter names (default: all).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: local Ray).")] = None,
    config: Annotated[Path | None, typer.Option(help="Scoring config YAML (model paths, limits).")] = None,
    rows_per_partition: Annotated[
        int | None,
        typer.Option(min=1, help="Rows per input partition / pool shard (default: 256; a small source is split in 8)."),
    ] = None,
) -> None:
    """Score every sample of SOURCE into WORKSPACE/pool (resumable: completed shards are skipped)."""
    from filters.config import ScoringConfig
    from flywheel.workspace import Workspace
    from pipelines.steps.score import score as run_score

    ws = Workspace.at(workspace)
    names = filters.split(",") if filters else None
    cfg = ScoringConfig.load(config)
    with _progress() as progress:
        task = progress.add_task("shards", total=None)
        result = run_score(
            source,
            ws,
            filters=names,
            cfg=cfg,
            ray_address=ray_address,
            rows_per_partition=rows_per_partition,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            log=lambda m: err.print(m, markup=False),  # "[warning] ..." is text, not Rich markup
        )
    console.print(
        f"scored {result.rows_written} rows into {result.written} new shard(s); "
        f"{result.skipped} shard(s) already complete; {result.seconds:.1f}s -> {ws.pool_dir}"
    )
    for name, message in result.unavailable.items():
        console.print(f"[yellow]{name}: {message}[/]")
    from pipelines.ray_runtime import shutdown_ray

    shutdown_ray()  # now, rather than in Ray's slower exit hook (a no-op when every shard was already complete)


@app.command("score-missing")
def score_missing(
    workspace: WorkspaceOpt,
    filters: Annotated[str | None, typer.Option(help="Comma-separated filter names (default: all).")] = None,
    config: Annotated[Path | None, typer.Option(help="Scoring config YAML (model paths, limits).")] = None,
) -> None:
    """Add the columns of filters the existing pool lacks, rewriting its shards in place (no re-ingest).

    Model filters (aesthetics, the shared embedding, NSFW, ...) run in this process; embedding filters reuse
    a stored image_embedding.
    """
    from filters.config import ScoringConfig
    from flywheel.workspace import Workspace
    from pipelines.steps.add_columns import add_missing_columns

    result = add_missing_columns(
        Workspace.at(workspace),
        filters.split(",") if filters else None,
        ScoringConfig.load(config),
        log=lambda m: err.print(m),
    )
    console.print(
        f"added columns on {result.rewritten} of {result.shards} shard(s) ({result.rows} rows): "
        f"{result.added or 'nothing missing'}"
    )
    for name, message in result.unavailable.items():
        console.print(f"[yellow]{name}: {message}[/]")


@app.command()
def select(
    workspace: WorkspaceOpt,
    recipe: Annotated[str, typer.Option(help="Built-in recipe name or a recipe YAML path.")] = "stage1_256p",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a threshold: RULE.PARAM=VALUE.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print funnel.json instead of the table.")] = False,
    name: Annotated[
        str | None,
        typer.Option(help="Selection folder name (default: the recipe's; with --set: RECIPE+<hash of the overrides>)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a selection that another recipe or other overrides wrote.")
    ] = False,
    rehash: Annotated[
        bool,
        typer.Option(
            "--rehash", help="Hash every pool shard, even those unchanged (size, mtime, inode) since they last checked."
        ),
    ] = False,
) -> None:
    """Apply a stage recipe to the pool: write WORKSPACE/curated/NAME/ and print the funnel."""
    from filters.registry import column_owners
    from flywheel.recipes import load_recipe
    from flywheel.select import select as run_select
    from flywheel.workspace import Workspace

    rec = load_recipe(recipe)
    overrides = dict(_split_override(s) for s in (set_ or []))
    if overrides:
        rec = rec.with_overrides(overrides)
    selection = run_select(
        Workspace.at(workspace), rec, known_columns=column_owners(), name=name, replace=replace, rehash=rehash
    )
    selection.funnel.check()
    for warning in selection.funnel.warnings:
        err.print(f"[warning] {warning}", markup=False)
    if json_out:
        console.print_json(json.dumps(selection.funnel.to_json()))
    else:
        typer.echo(selection.funnel.to_text())
        for m in selection.extra.get("mix", []):
            console.print(
                f"mix {m['from']} (weight {m['weight']}): {m['kept']}/{m['rows_in']} rows kept -> "
                f"{workspace / m['dir']}; removed {m['by_reason'] or 'none'}; provenance {m['provenance']}"
                + (f" ({m['note']})" if m["note"] else "")
            )
        console.print(f"curated shards in {selection.out_dir}")
        console.print(f"funnel, rejected rows and manifest in {Workspace.at(workspace).selection_dir(rec.name)}")


def _split_override(text: str) -> tuple[str, str]:
    from flywheel.config import ConfigError

    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like RULE.PARAM=VALUE")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


@app.command()
def rejected(
    workspace: WorkspaceOpt,
    reason: Annotated[str | None, typer.Option(help="Only rows rejected by this rule (primary or any).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many rows to list.")] = 20,
    recipe: Annotated[str | None, typer.Option(help="Selection to read (default: the only/most recent one).")] = None,
) -> None:
    """List rejected samples with their reasons."""
    from flywheel.select import read_rejected
    from flywheel.workspace import Workspace

    ws = Workspace.at(workspace)
    name = recipe or _latest_recipe(ws)
    table = read_rejected(ws, name, reason, limit)
    out = Table(title=f"rejected by {name}" + (f" (reason {reason})" if reason else ""))
    for col in ("uri", "reason", "value", "why", "detail", "also failed", "duplicate_of"):
        out.add_column(col, overflow="fold")
    for row in table.to_pylist():
        also = [r for r in (row.get("reasons") or []) if r != row["reason"]]
        dup = " ".join(x for x in (row.get("duplicate_of"), row.get("duplicate_of_uri")) if x)
        out.add_row(
            row["uri"],
            row["reason"],
            row.get("value") or "",
            row.get("why") or "",
            row.get("detail") or "",
            ",".join(also),
            dup,
        )
    console.print(out)
    if table.num_rows == 0:
        console.print("no rejected rows match")


def _latest_recipe(ws: object) -> str:
    from flywheel.workspace import Workspace

    assert isinstance(ws, Workspace)
    recipes = ws.curated_recipes()
    if not recipes:
        _fail(f"no selection in {ws.root}: run `flywheel select --workspace {ws.root}` first")
    return max(recipes, key=lambda r: ws.funnel_path(r).stat().st_mtime)


@app.command("filters")
def list_filters() -> None:
    """List every filter and the columns it writes (name, dtype, unit, description)."""
    from filters.registry import FILTERS

    out = Table(title="score columns")
    for col in ("filter", "column", "dtype", "unit", "description"):
        out.add_column(col, overflow="fold")
    for cls in FILTERS:
        kind = ("model" if hasattr(cls, "load") else "cpu") + ("" if cls.default_on else ", opt-in")
        for c in cls.columns:
            out.add_row(f"{cls.name} ({kind})", c.name, str(c.dtype), c.unit, c.description)
    console.print(out)


@app.command()
def demo(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Where to build the demo.")] = Path(
        "flywheel-demo"
    ),
    scale: Annotated[int, typer.Option(min=1, help="Multiply the corpus size.")] = 1,
    captions: Annotated[bool, typer.Option("--captions", help="Also OCR-caption the curated set (slower).")] = False,
) -> None:
    """Build a small real corpus offline, score it and select stage 1 (a few minutes on 2 cores)."""
    from pipelines.demo.run import run_demo

    run_demo(workspace, scale=scale, console=console, captions=captions)


@app.command()
def curate(
    source: Annotated[str, typer.Argument(help="Source to score.")],
    workspace: WorkspaceOpt,
    recipe: Annotated[str, typer.Option(help="Recipe to select with.")] = "stage1_256p",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
) -> None:
    """Run the Prefect `curate` flow (score, select, report) locally or against PREFECT_API_URL."""
    from flywheel.ingest import open_source
    from flywheel.recipes import load_recipe

    # Check what the user typed before Prefect starts: a wrong path or recipe is one line and exit 2 here, and
    # inside the flow (scheduled runs) the same UserError fails the run at once without retries.
    open_source(source)
    load_recipe(recipe)
    from pipelines.flows.curate import curate as curate_flow

    report = curate_flow(source=source, workspace=str(workspace), recipe=recipe, ray_address=ray_address)
    typer.echo(report["funnel_text"])


def _register_parts() -> None:
    """Each part (trainer, captioners, flywheel loop) owns its commands in its own module."""
    from pipelines.cli import aesthetics as cli_aesthetics
    from pipelines.cli import caption as cli_caption
    from pipelines.cli import dashboard as cli_dashboard
    from pipelines.cli import export as cli_export
    from pipelines.cli import loop as cli_loop
    from pipelines.cli import mine as cli_mine
    from pipelines.cli import reservoir as cli_reservoir
    from pipelines.cli import retrain as cli_retrain
    from pipelines.cli import train as cli_train

    for part in (cli_train, cli_caption, cli_loop, cli_reservoir, cli_mine, cli_retrain, cli_dashboard, cli_export):
        part.register(app)
    cli_aesthetics.register(app)


_register_parts()


def main() -> None:
    """Entry point of `flywheel`; errors are turned into exits by `_FlywheelGroup.invoke`."""
    app()
