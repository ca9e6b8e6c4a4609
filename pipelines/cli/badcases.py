"""`flywheel badcases ingest|list|show|export|decide` (registered by pipelines.cli.loop)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flywheel.tracks import registry as track_registry
from pipelines.cli.common import WorkspaceOpt, console


def register_badcases(group: typer.Typer) -> None:
    """Add the `badcases` sub-commands to `group`; errors reach the one handler in pipelines.cli."""

    def store_of(workspace: Path) -> object:
        from flywheel.badcases import BadCaseStore
        from flywheel.workspace import Workspace

        return BadCaseStore.for_workspace(Workspace.at(workspace).root)

    @group.command("ingest")
    def ingest(
        workspace: WorkspaceOpt,
        files: Annotated[list[Path], typer.Argument(help="Evaluation .parquet, feedback .jsonl/.csv files.")],
        source: Annotated[
            str | None,
            typer.Option(help="evaluation | feedback | mining (default: by extension; .parquet = evaluation)."),
        ] = None,
        skip_invalid: Annotated[bool, typer.Option(help="Ingest the valid lines of a file with bad ones.")] = False,
    ) -> None:
        """Ingest bad cases; re-ingesting a file adds nothing twice."""
        from flywheel.badcases import ingest_file

        store = store_of(workspace)
        for path in files:
            report = ingest_file(store, path, source, skip_invalid=skip_invalid)  # type: ignore[arg-type]
            console.print(
                f"{path}: {report.result.added} added, {report.result.skipped} already in the store"
                + (f", {len(report.invalid)} invalid line(s) skipped" if report.invalid else "")
            )
            for line in report.invalid:
                console.print(f"  [yellow]{line}[/]")

    @group.command("list")
    def list_(
        workspace: WorkspaceOpt,
        track: Annotated[str | None, typer.Option(help=" | ".join((*track_registry.names(), "unrouted")))] = None,
        source: Annotated[str | None, typer.Option(help="evaluation | mining | feedback")] = None,
        references: Annotated[bool, typer.Option(help="List passing reference outputs instead.")] = False,
        limit: Annotated[int, typer.Option(min=1)] = 50,
    ) -> None:
        """List bad cases with their track and the rule or annotator that set it."""
        cases = store_of(workspace).list(
            track=track,
            source=source,  # type: ignore[attr-defined]
            kind="reference" if references else "bad",
            limit=limit,
        )
        out = Table(title=f"{len(cases)} case(s)")
        for col in ("case_id", "source", "prompt", "tags / complaint", "track", "by"):
            out.add_column(col, overflow="fold")
        for c in cases:
            out.add_row(
                c["case_id"],
                c["source"],
                c["prompt"][:70],
                ",".join(c["failure_tags"]) or (c["complaint"] or "")[:50],
                c["track"] or "-",
                c["track_by"] or "-",
            )
        console.print(out)

    @group.command("show")
    def show(workspace: WorkspaceOpt, case_id: Annotated[str, typer.Argument(help="Case id.")]) -> None:
        """Everything about one case: record, evidence, rule that fired, decisions, image files."""
        store = store_of(workspace)
        case = store.get(case_id)  # type: ignore[attr-defined]
        for key in ("input_image", "output_image"):
            if case.get(key):
                case[key] = str(store.image_file(case[key]))  # type: ignore[attr-defined]
        console.print_json(json.dumps(case, default=str, ensure_ascii=False))

    @group.command("export")
    def export(
        workspace: WorkspaceOpt, out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")]
    ) -> None:
        """Export every case (with evidence and decisions as JSON) to Parquet."""
        from flywheel.badcases.export import export_parquet

        n = export_parquet(store_of(workspace), out)  # type: ignore[arg-type]
        console.print(f"wrote {n} case(s) to {out}")

    @group.command("decide")
    def decide(
        workspace: WorkspaceOpt,
        case_id: Annotated[str, typer.Argument(help="Case id.")],
        track: Annotated[str, typer.Option(help=" | ".join(track_registry.names()))],
        by: Annotated[str, typer.Option(help="Annotator name.")],
        note: Annotated[str | None, typer.Option(help="Why.")] = None,
    ) -> None:
        """Record an annotator's decision (transactional; it overrides the router's track)."""
        decision = store_of(workspace).decide(case_id, track, by, note)  # type: ignore[attr-defined]
        console.print(f"decision {decision}: {case_id} -> {track} by {by}")
