"""What every `flywheel` command module shares: the two consoles, the error exit and the progress bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flywheel.store.fs import storage_path

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

WorkspaceOpt = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder or s3://bucket/prefix (pool, curated, index, badcases, tracks, checkpoints, runs).",
        parser=storage_path,  # a Path, or an ObjectPath for a URI (Path would fold s3:// into s3:/)
    ),
]


def fail(message: str, code: int = 2) -> None:
    """Print a clear error and exit; code 2 is bad input, 1 a failed run."""
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def parse_seeds(seeds: str) -> tuple[int, ...]:
    """`--seeds 0,1,2` as integers; anything else is bad input (exit 2), never a traceback."""
    try:
        return tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        fail(f"--seeds must be comma-separated integers, got {seeds!r}")
    return ()


def progress_bar() -> Progress:
    """A rich progress bar on stderr, off when stderr is not a terminal (logs and CI stay clean)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not sys.stderr.isatty(),
    )
