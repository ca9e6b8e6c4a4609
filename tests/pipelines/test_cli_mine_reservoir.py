"""`flywheel mine` and `flywheel reservoir` at the command line: empty workspaces and bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def test_mine_without_routed_cases_says_what_to_run(tmp_path):
    res = runner.invoke(app, ["mine", "-w", str(tmp_path / "ws"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["failures"] == 0 and "flywheel route" in report["notes"][0]
    assert (tmp_path / "ws" / "mining" / report["run"] / "report.json").is_file()


def test_reservoir_bad_name_and_empty_list(tmp_path):
    res = runner.invoke(app, ["reservoir", "add", str(tmp_path), "-w", str(tmp_path / "ws"), "--name", "Bad Name!"])
    assert res.exit_code == 2 and "invalid reservoir name" in res.output
    res = runner.invoke(app, ["reservoir", "list", "-w", str(tmp_path / "ws")])
    assert res.exit_code == 0 and "reservoirs" in res.output
    res = runner.invoke(app, ["mine", "-w", str(tmp_path / "ws"), "--seeds", "a,b"])
    assert res.exit_code == 2 and "--seeds" in res.output
