"""`flywheel` commands of the caption part; `register` adds them to the main Typer app in pipelines/cli.py."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""
