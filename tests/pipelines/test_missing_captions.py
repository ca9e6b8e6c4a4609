"""A source without any caption warns at `score` and at `select`; caption rules then judge nothing."""

import json

import pyarrow as pa
from typer.testing import CliRunner

from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from pipelines.cli import app
from pipelines.steps.score import score
from tests.images import encode, photo_like

runner = CliRunner()


def _captionless_pool(ws: Workspace, with_caption: bool = False) -> None:
    n = 3
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "uri": ["/x/a.jpg", "/x/b.jpg", "/x/c.jpg"],
            "partition": [0] * n,
            "task": ["T2I"] * n,
            "image": [b"1", b"2", b"3"],
            "file_bytes": [1] * n,
            "caption": pa.array(["a red bus on a street", None, None] if with_caption else [None] * n, pa.string()),
            "broken_reason": pa.array([None, "truncated", None], pa.string()),
            "caption_issue": pa.array([None, "missing", "missing"] if with_caption else ["missing"] * n, pa.string()),
            "caption_tokens": pa.array([6, None, None] if with_caption else [None] * n, pa.int32()),
        }
    )
    store = ShardStore(ws.pool_dir)
    store.write(0, table, "fp")
    store.write_manifest({"caption_columns": ["caption_tokens", "caption_issue", "clip_score"]})


def test_score_warns_when_no_row_has_a_caption(tmp_path, ray_session):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"p{i}.jpg").write_bytes(encode(photo_like(96, 80, seed=i)))
    logged: list[str] = []
    result = score(str(src), Workspace.at(tmp_path / "ws"), filters=["tokens"], log=logged.append)
    assert result.captions_missing == result.rows_written == 3
    warnings = [m for m in logged if "has a caption" in m]
    assert len(warnings) == 1 and warnings[0].startswith("[warning]") and "3 rows" in warnings[0]
    manifest = Workspace.at(tmp_path / "ws").pool.read_manifest()
    assert {"caption_issue", "caption_tokens"} <= set(manifest["caption_columns"])
    (src / "p0.txt").write_text("a small photo-like picture")  # one caption is enough: no warning
    logged.clear()
    score(str(src), Workspace.at(tmp_path / "ws2"), filters=["tokens"], log=logged.append)
    assert not [m for m in logged if "has a caption" in m]


def test_select_says_caption_rules_judged_nothing(tmp_path):
    _captionless_pool(Workspace.at(tmp_path))
    result = runner.invoke(app, ["select", "--workspace", str(tmp_path), "--recipe", "stage1_256p"])
    assert result.exit_code == 0, result.output
    funnel = json.loads((tmp_path / "selections" / "stage1_256p" / "funnel.json").read_text())
    assert funnel["kept"] == 2 and funnel["removed_by_rule"] == {"broken": 1}  # not 0 kept, silently
    not_applied = {n["rule"]: n["why"] for n in funnel["not_applied"]}
    assert "judged nothing" in not_applied["caption_invalid"] and "judged nothing" in not_applied["caption_tokens"]
    assert len(funnel["warnings"]) == 1 and "no row of the pool has a caption" in funnel["warnings"][0]
    assert "[warning] no row of the pool has a caption" in result.stderr


def test_select_with_some_captions_applies_caption_rules(tmp_path):
    _captionless_pool(Workspace.at(tmp_path), with_caption=True)
    result = runner.invoke(app, ["select", "--workspace", str(tmp_path), "--recipe", "stage1_256p", "--json"])
    assert result.exit_code == 0, result.output
    funnel = json.loads((tmp_path / "selections" / "stage1_256p" / "funnel.json").read_text())
    assert funnel["warnings"] == [] and funnel["kept"] == 1 and funnel["removed_by_rule"]["caption_invalid"] == 1
