"""Users in the workspace: argon2 hashes, roles, and the `flywheel users add` command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dashboards.users import AccountError, User, UserStore
from pipelines.cli import app


def test_passwords_are_hashed_and_verified(tmp_path):
    users = UserStore(tmp_path)
    users.add("ann", "annotator", "s3cret-enough")
    raw = (tmp_path / "dashboards" / "users.sqlite").read_bytes()
    assert b"s3cret-enough" not in raw and b"$argon2id$" in raw
    assert users.verify("ann", "s3cret-enough") == User("ann", "annotator")
    assert users.verify("ann", "wrong-password") is None and users.verify("nobody", "s3cret-enough") is None
    with pytest.raises(AccountError):
        users.add("ann", "admin", "another-password")
    users.add("ann", "admin", "another-password", replace=True)
    assert users.get("ann").may("engineer") and not User("x", "annotator").may("engineer")


@pytest.mark.parametrize(
    ("name", "role", "password"),
    [("a b", "annotator", "longpassword"), ("ok", "boss", "longpassword"), ("ok", "admin", "short")],
)
def test_bad_users_are_refused(tmp_path, name, role, password):
    with pytest.raises(AccountError):
        UserStore(tmp_path).add(name, role, password)


def test_cli_reads_password_from_stdin(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["users", "add", "carol", "--role", "engineer", "-w", str(tmp_path)], input="pw-from-stdin\n"
    )
    assert result.exit_code == 0, result.output
    assert UserStore(tmp_path).verify("carol", "pw-from-stdin") == User("carol", "engineer")
    bad = runner.invoke(app, ["users", "add", "dave", "--role", "boss", "-w", str(tmp_path)], input="pw-from-stdin\n")
    assert bad.exit_code == 2 and "role" in bad.output
    listed = runner.invoke(app, ["users", "list", "-w", str(tmp_path)])
    assert "carol\tengineer" in listed.output


def test_dashboard_command_refuses_a_workspace_without_users(tmp_path):
    result = CliRunner().invoke(app, ["dashboard", "-w", str(tmp_path)])
    assert result.exit_code == 2 and "flywheel users add" in result.output
