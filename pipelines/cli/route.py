"""`flywheel route`, `route-fit`, `tracks` and `cycle` (registered by pipelines.cli.loop)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flywheel.errors import UserError
from pipelines.cli.common import WorkspaceOpt, console


def register_route(app: typer.Typer) -> None:
    """Add `route`, `route-fit`, `tracks` and `cycle` to `app`; errors reach the one handler in pipelines.cli."""

    @app.command()
    def route(
        workspace: WorkspaceOpt,
        policy: Annotated[
            Path | None, typer.Option(help="Policy YAML (default: flywheel/routing/default_policy.yaml).")
        ] = None,
        mode: Annotated[str, typer.Option(help="rules | learned | blend")] = "rules",
        min_confidence: Annotated[float, typer.Option(help="blend: learned router's minimum probability.")] = 0.7,
        reroute: Annotated[bool, typer.Option(help="Re-route cases the router already routed.")] = False,
    ) -> None:
        """Attribute each bad case (evidence) and route it to the rl, pretrain or prompt track."""
        from flywheel.workspace import Workspace
        from pipelines.steps.loop import route as run_route

        s = run_route(
            Workspace.at(workspace), policy_path=policy, mode=mode, min_confidence=min_confidence, reroute=reroute
        )
        if not s.coverage_measured and s.routed:
            console.print("[yellow]no index: coverage evidence not measured (run `flywheel index` first)[/]")
        console.print(f"routed {s.routed} case(s); {s.kept_annotator} kept their annotator decision")
        for rule, n in sorted(s.by_rule.items()):
            console.print(f"  {rule}: {n}")

    @app.command("route-fit")
    def route_fit(
        workspace: WorkspaceOpt, min_cases: Annotated[int, typer.Option(min=4, help="Minimum decided cases.")] = 12
    ) -> None:
        """Train the learned router on annotator decisions; print its cross-validated agreement."""
        from flywheel.badcases import BadCaseStore
        from flywheel.routing import fit_router
        from flywheel.workspace import Workspace
        from pipelines.steps.loop import router_path

        ws = Workspace.at(workspace)
        store = BadCaseStore.for_workspace(ws.root)
        decided = store.latest_decisions()
        cases = [c for c in store.list(kind="bad") if c["case_id"] in decided and c["evidence"]]
        if len(cases) < len(decided):
            console.print(
                f"[yellow]{len(decided) - len(cases)} decided case(s) have no evidence yet: run "
                "`flywheel route` first[/]"
            )
        router, confusion, order = fit_router(
            [c["evidence"] for c in cases], [decided[c["case_id"]] for c in cases], min_cases=min_cases
        )
        router.save(router_path(ws))
        out = Table(
            title=f"cross-validated agreement {router.cv_agreement:.3f} ({router.cv_folds} folds, "
            f"{router.trained_on} cases); rows: annotator, columns: router"
        )
        out.add_column("")
        for c in order:
            out.add_column(c)
        for c, row in zip(order, confusion, strict=True):
            out.add_row(c, *[str(int(v)) for v in row])
        console.print(out)
        console.print(f"saved {router_path(ws)} (JSON); use `flywheel route --mode blend`")

    tracks_app = typer.Typer(help="Tracks' data: write them from the routed cases, export prompt pairs.")
    app.add_typer(tracks_app, name="tracks")

    @tracks_app.callback(invoke_without_command=True)
    def tracks(
        ctx: typer.Context,
        workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace folder.")] = None,
        track: Annotated[
            list[str] | None, typer.Option(help="A data track of flywheel.tracks.registry (default: all).")
        ] = None,
        llm_endpoint: Annotated[
            str | None,
            typer.Option(help="OpenAI-compatible base URL (…/v1) for prompt rewriting; key from OPENAI_API_KEY."),
        ] = None,
        llm_model: Annotated[str, typer.Option(help="Model name at the endpoint.")] = "gpt-4o-mini",
        min_margin: Annotated[float, typer.Option(help="RL: minimum reward margin of a pair.")] = 0.1,
    ) -> None:
        """Write each track's data (expansion shards, preference pairs, rewrite pairs) under WORKSPACE/tracks/."""
        if ctx.invoked_subcommand is not None:
            return
        if workspace is None:
            raise UserError("give --workspace/-w (or a subcommand: export-prompt)")
        import os

        from flywheel.tracks.prompt import LlmEndpoint
        from flywheel.workspace import Workspace
        from pipelines.steps.loop import write_tracks

        llm = LlmEndpoint(llm_endpoint, llm_model, os.environ.get("OPENAI_API_KEY")) if llm_endpoint else None
        report = write_tracks(Workspace.at(workspace), tuple(track) if track else None, llm=llm, min_margin=min_margin)
        for name, got in report.written.items():
            console.print(f"{name}: {json.dumps(got)}")

    @tracks_app.command("export-prompt")
    def export_prompt(
        workspace: WorkspaceOpt,
        out: Annotated[Path, typer.Argument(help="Output JSONL (one chat example per line).")],
    ) -> None:
        """Export the prompt track's pairs as chat examples (system, user: prompt, assistant: rewrite)."""
        from flywheel.tracks.prompt import export_chat
        from flywheel.workspace import Workspace

        n = export_chat(Workspace.at(workspace), out)
        console.print(f"wrote {n} chat example(s) to {out}")

    @app.command()
    def cycle(
        workspace: WorkspaceOpt,
        inputs: Annotated[list[Path] | None, typer.Argument(help="Evaluation/feedback files to ingest.")] = None,
        export: Annotated[Path | None, typer.Option(help="Also export the store to this Parquet.")] = None,
    ) -> None:
        """Run the Prefect `cycle` flow: ingest -> route -> expand (tracks) -> export."""
        from pipelines.flows.cycle import cycle as cycle_flow

        report = cycle_flow(
            workspace=str(workspace), inputs=[str(p) for p in inputs or []], export=str(export) if export else None
        )
        console.print_json(json.dumps(report, default=str))
