"""`flywheel mine`: probe prompts near confirmed failures and list data suspects into the bad-case store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.common import WorkspaceOpt, console, err, parse_seeds


def register(app: typer.Typer) -> None:
    """Add `mine` to `app`."""

    @app.command()
    def mine(
        workspace: WorkspaceOpt,
        checkpoint: Annotated[
            str, typer.Option("--checkpoint", "-c", help="Checkpoint (STAGE, STAGE/step-N or path) to probe.")
        ] = "stage1_tiny_cpu",
        seeds: Annotated[str, typer.Option(help="Comma-separated seeds per probe prompt.")] = "0,1",
        steps: Annotated[int, typer.Option(min=1, help="Euler steps.")] = 8,
        k_bank: Annotated[int, typer.Option(min=0, help="Probes per failure from the evaluation prompt bank.")] = 3,
        k_pool: Annotated[int, typer.Option(min=0, help="Probes per failure from pool captions.")] = 3,
        no_probes: Annotated[bool, typer.Option("--no-probes", help="Only list data suspects.")] = False,
        no_suspects: Annotated[bool, typer.Option("--no-suspects", help="Only probe.")] = False,
        device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Mine bad cases: probes near each routed failure (generate + score) and poorly scored training samples."""
        from flywheel.mining import MiningConfig
        from flywheel.workspace import Workspace
        from pipelines.steps.mine import mine as run_mine

        seed_list = parse_seeds(seeds)
        report = run_mine(
            Workspace.at(workspace),
            checkpoint=checkpoint,
            seeds=seed_list,
            steps=steps,
            cfg=MiningConfig(k_bank=k_bank, k_pool=k_pool),
            probes=not no_probes,
            suspects=not no_suspects,
            device=device,
            log=lambda m: err.print(m),
        )
        if json_out:
            typer.echo(json.dumps(report.__dict__, default=str))
            return
        out = Table(
            title=f"reach of {report.failures} failure(s) ({report.probes} probes, {report.probe_outputs} outputs)"
        )
        for col in ("case", "prompt", "probes", "failing", "reach", "weighted"):
            out.add_column(col, overflow="fold")
        for r in report.reach:
            out.add_row(
                r["case_id"],
                r["prompt"][:50],
                str(r["probes"]),
                str(r["failed_probes"]),
                f"{r['reach']:.2f}",
                f"{r['weighted_reach']:.2f}",
            )
        console.print(out)
        for note in report.notes:
            console.print(f"[yellow]{note}[/]")
        console.print(
            f"added {report.probe_cases_added} probe case(s) and {report.suspects_added} data suspect(s) "
            f"(source mining); report {report.report_path}"
        )
