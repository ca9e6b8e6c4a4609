"""`flywheel dashboard` (serve the triage app and data views) and `flywheel users add|list`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipelines.cli.common import WorkspaceOpt, console, err
from pipelines.cli.common import fail as _fail


def register(app: typer.Typer) -> None:
    """Add `dashboard` and the `users` group to `app`."""

    @app.command()
    def dashboard(
        workspace: WorkspaceOpt,
        host: Annotated[str, typer.Option(help="Address to bind (localhost only unless you say otherwise).")] = (
            "127.0.0.1"
        ),
        port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    ) -> None:
        """Serve the dashboard for WORKSPACE: annotators' triage and the data views (log in first)."""
        import uvicorn

        from dashboards.app import create_app
        from dashboards.users import UserStore

        ws_path = workspace.expanduser().resolve()
        if not ws_path.is_dir():
            _fail(f"workspace {ws_path} does not exist")
        if not UserStore(ws_path).list():
            _fail(f"no users in {ws_path}: add one with `flywheel users add NAME --role admin -w {ws_path}`")
        app_ = create_app(ws_path)
        cursor = app_.state.cache.cursor()  # build the aggregate cache now rather than on the first page
        err.print(f"aggregates {'ready' if cursor is not None else 'skipped (no pool yet)'}")
        from flywheel.workspace import Workspace

        if Workspace(ws_path).index_dir.is_dir():  # load the text embedder now: the first case page shows neighbours
            import threading

            threading.Thread(target=app_.state.neighbours.embedder, daemon=True).start()
        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"[yellow]binding {host}: the dashboard is reachable from other machines[/]")
        console.print(f"dashboard for {ws_path} on http://{host}:{port}/")
        uvicorn.run(app_, host=host, port=port, log_level="warning")

    users = typer.Typer(no_args_is_help=True, help="Dashboard users (stored in the workspace).")
    app.add_typer(users, name="users")

    @users.command("add")
    def users_add(
        name: Annotated[str, typer.Argument(help="Login name.")],
        workspace: WorkspaceOpt,
        role: Annotated[str, typer.Option(help="annotator | engineer | admin")] = "annotator",
        replace: Annotated[bool, typer.Option(help="Change the role/password of an existing user.")] = False,
    ) -> None:
        """Add a user; the password is read from standard input (one line), never from the command line."""
        from dashboards.users import AccountError, UserStore

        if sys.stdin.isatty():
            import getpass

            password = getpass.getpass(f"password for {name}: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        try:
            user = UserStore(workspace.expanduser().resolve()).add(name, role, password, replace=replace)
        except AccountError as exc:
            _fail(str(exc))
        console.print(f"user {user.name} ({user.role}) saved")

    @users.command("list")
    def users_list(workspace: WorkspaceOpt) -> None:
        """List users and roles."""
        from dashboards.users import UserStore

        for user in UserStore(workspace.expanduser().resolve()).list():
            typer.echo(f"{user.name}\t{user.role}")
