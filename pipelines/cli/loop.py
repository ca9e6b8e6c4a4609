"""`flywheel` commands of the loop part: index, search, badcases, route, route-fit, tracks, cycle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.common import WorkspaceOpt, console, err
from pipelines.cli.common import fail as _fail


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""
    badcases = typer.Typer(no_args_is_help=True, help="The bad-case store: ingest, list, show, export, decide.")
    app.add_typer(badcases, name="badcases")

    @app.command()
    def index(
        workspace: WorkspaceOpt,
        config: Annotated[Path | None, typer.Option(help="Index config YAML (batch, CLIP, ANN).")] = None,
        ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    ) -> None:
        """Embed the pool (images and captions) into WORKSPACE/index (LanceDB); only new ids are embedded."""
        from flywheel.retrieval import IndexConfig
        from flywheel.workspace import Workspace
        from pipelines.steps.index import build_index

        report = build_index(
            Workspace.at(workspace), IndexConfig.load(config), ray_address=ray_address, log=lambda m: err.print(m)
        )
        out = Table(title=f"index ({report.seconds:.1f}s)")
        for col in ("table", "space", "rows", "new", "already", "undecodable", "ANN"):
            out.add_column(col, overflow="fold")
        for t in report.tables:
            out.add_row(
                t.table,
                t.space,
                str(t.rows),
                str(t.embedded),
                str(t.skipped_existing),
                str(t.undecodable),
                "yes" if t.ann else "no (exact)",
            )
        console.print(out)

    @app.command()
    def search(
        workspace: WorkspaceOpt,
        text: Annotated[str | None, typer.Option(help="Text query.")] = None,
        image: Annotated[Path | None, typer.Option(help="Image file query.")] = None,
        id_: Annotated[str | None, typer.Option("--id", help="A pool id: its neighbours.")] = None,
        where: Annotated[str | None, typer.Option(help='SQL filter on metadata, e.g. "curated = false".')] = None,
        k: Annotated[int, typer.Option("-k", min=1, max=1000, help="Neighbours to return.")] = 10,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
    ) -> None:
        """Nearest pool samples of a text, an image or an id, with similarity, metadata and the space used."""
        from flywheel.workspace import Workspace
        from pipelines.steps.search import search_pool

        if sum(x is not None for x in (text, image, id_)) != 1:
            _fail("give exactly one of --text, --image, --id")
        result = search_pool(Workspace.at(workspace), text=text, image=image, sample_id=id_, where=where, k=k)
        meta = result.schema.metadata or {}
        space = meta.get(b"flywheel.space", b"?").decode()
        cols = ["similarity", "id", "caption", "curated", "reject_reason", "uri"]
        rows = result.select([c for c in cols if c in result.column_names]).to_pylist()
        if json_out:
            typer.echo(
                json.dumps(
                    {"space": space, "table": meta.get(b"flywheel.table", b"").decode(), "results": rows},
                    default=str,
                    ensure_ascii=False,
                )
            )
            return
        out = Table(title=f"{len(rows)} neighbours in {space}")
        for col in cols:
            out.add_column(col, overflow="fold")
        for r in rows:
            out.add_row(
                f"{r['similarity']:.3f}",
                r["id"],
                str(r.get("caption") or ""),
                str(r.get("curated")),
                str(r.get("reject_reason") or ""),
                str(r.get("uri") or ""),
            )
        console.print(out)

    from pipelines.cli.badcases import register_badcases
    from pipelines.cli.route import register_route

    register_badcases(badcases)
    register_route(app)
