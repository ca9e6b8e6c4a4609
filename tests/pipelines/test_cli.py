"""The command line as a user drives it: listing filters, selecting, listing rejections, bad input."""

import json

import pyarrow as pa
from typer.testing import CliRunner

from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from pipelines.cli import app

runner = CliRunner()


def _tiny_pool(ws: Workspace) -> None:
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "uri": ["/x/a.jpg", "/x/b.jpg", "/x/c.jpg"],
            "partition": [0, 0, 0],
            "task": ["T2I"] * 3,
            "image": [b"1", b"2", b"3"],
            "file_bytes": [1, 1, 1],
            "broken_reason": pa.array([None, "truncated", None], pa.string()),
            "broken_detail": pa.array([None, "OSError: image file is truncated (3 bytes not processed)", None]),
            "resolution_min_side": pa.array([512, None, 512], pa.int32()),
            "nsfw_score": pa.array([0.1, None, 0.99], pa.float32()),
        }
    )
    ShardStore(ws.pool_dir).write(0, table, "fp")


def test_filters_lists_every_declared_column():
    result = runner.invoke(app, ["filters"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for column in (
        "broken_reason",
        "dedup_phash",
        "nsfw_score",
        "rotation_upright_prob",
        "entropy_bits",
        "clip_score",
        "caption_tokens",
    ):
        assert column in result.output


def test_select_and_rejected(tmp_path):
    ws = Workspace.at(tmp_path)
    _tiny_pool(ws)
    result = runner.invoke(app, ["select", "--workspace", str(tmp_path), "--recipe", "stage1_256p"])
    assert result.exit_code == 0, result.output
    assert "kept 1 of 3" in result.output
    funnel = json.loads((tmp_path / "selections" / "stage1_256p" / "funnel.json").read_text())
    assert funnel["rows_in"] == 3 and funnel["kept"] == 1 and funnel["removed_by_rule"]["nsfw"] == 1
    result = runner.invoke(
        app, ["rejected", "--workspace", str(tmp_path), "--reason", "broken", "--limit", "5"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0 and "/x/b.jpg" in result.output and "/x/c.jpg" not in result.output
    loose = runner.invoke(app, ["select", "--workspace", str(tmp_path), "--set", "nsfw.max=1.0", "--json"])
    assert loose.exit_code == 0 and '"kept": 2' in loose.output


def test_bad_input_gives_clear_errors(tmp_path):
    result = runner.invoke(app, ["select", "--workspace", str(tmp_path)])
    assert result.exit_code == 2 and "flywheel score" in result.output
    result = runner.invoke(app, ["score", str(tmp_path / "missing"), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 2 and "missing" in result.output
    _tiny_pool(Workspace.at(tmp_path))
    result = runner.invoke(app, ["select", "--workspace", str(tmp_path), "--set", "nsfw.maximum=3"])
    assert result.exit_code == 2 and "unknown rule parameter" in result.output
    result = runner.invoke(app, ["score", str(tmp_path), "--workspace", str(tmp_path / "w"), "--filters", "nope"])
    assert result.exit_code == 2 and "unknown filter" in result.output


def test_rejected_shows_the_measured_value_the_rules_why_and_the_decoders_detail(tmp_path):
    ws = Workspace.at(tmp_path)
    _tiny_pool(ws)
    assert runner.invoke(app, ["select", "--workspace", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["rejected", "--workspace", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "/x/" in line}
    # c.jpg: nsfw measured 0.99 against max 0.7, with the recipe's reason in words
    assert "0.99" in lines["/x/c.jpg"] and "open_nsfw probability too high" in lines["/x/c.jpg"]
    # b.jpg: the decoder's own message, not only the rule name
    assert "image file is truncated" in lines["/x/b.jpg"] and "cannot be decoded" in lines["/x/b.jpg"]


def test_select_on_a_corrupt_or_incomplete_pool_is_one_line_naming_the_problem(tmp_path):
    ws = Workspace.at(tmp_path)
    _tiny_pool(ws)
    ws.source_offset("folder:/x", 2, [3, 5])  # the source planned a second partition that was never scored
    result = runner.invoke(app, ["select", "--workspace", str(tmp_path)])
    assert result.exit_code == 2 and "5 of 8 planned rows missing" in result.output
    assert "Traceback" not in result.output
    shard = ws.pool.shard_path(0)
    shard.write_bytes(shard.read_bytes()[:-10])
    result = runner.invoke(app, ["select", "--workspace", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "part-00000.parquet" in result.output and "re-score" in result.output
    assert "Traceback" not in result.output


def _one_error_line(result) -> str:
    """The whole stderr of a failed command: exactly one `error:` line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_a_source_with_no_images_is_an_error_not_zero_rows(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    result = runner.invoke(app, ["score", str(empty), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 2
    assert "no samples found" in _one_error_line(result)


def test_rejected_with_an_unknown_reason_lists_the_valid_ones(tmp_path):
    _tiny_pool(Workspace.at(tmp_path))
    assert runner.invoke(app, ["select", "--workspace", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["rejected", "--workspace", str(tmp_path), "--reason", "neardup"])
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "neardup" in line and "valid reasons" in line and "broken" in line and "nsfw" in line


def test_a_non_numeric_override_is_one_line(tmp_path):
    _tiny_pool(Workspace.at(tmp_path))
    result = runner.invoke(app, ["select", "--workspace", str(tmp_path), "--set", "nsfw.max=abc"])
    assert result.exit_code == 2
    assert "max must be a number" in _one_error_line(result)


def test_curate_on_a_wrong_path_is_one_line_before_prefect_starts(tmp_path):
    result = runner.invoke(app, ["curate", str(tmp_path / "nowhere"), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 2
    assert "nowhere" in _one_error_line(result)


def test_a_failed_run_exits_1_with_its_cause(tmp_path, monkeypatch):
    from pipelines.steps import score as score_step

    def lost_workers(*args, **kwargs):
        raise score_step.ScoreFailed("2 partition(s) failed: [0, 1]; re-run the same command to retry them")

    monkeypatch.setattr(score_step, "score", lost_workers)
    result = runner.invoke(app, ["score", str(tmp_path), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert "2 partition(s) failed" in _one_error_line(result)
