"""A workspace at `s3://bucket/prefix` through the CLI, against moto's S3 server on the loopback.

score -> select -> export -> caption -> index -> search -> train on the small corpus, with the same commands run on a
local workspace: the object store must give the same pool, funnel and kept rows, not just "no error".
"""

from __future__ import annotations

import json
import uuid

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from flywheel.store import fs
from flywheel.workspace import Workspace
from pipelines.cli import app
from tests.datagen import small_corpus
from tests.trainer.tiny import cpu_scaled

runner = CliRunner()
FILTERS = "broken,resolution,dedup,entropy"  # CPU scorers: storage, not models, is under test
RECIPE = "stage1_256p"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _kept(ws: Workspace) -> list[tuple[str, str]]:
    tables = [fs.read_table(p, columns=["id", "uri"]) for p in ws.curated_store(RECIPE).shard_paths()]
    return sorted(zip(*(pa.concat_tables(tables).column(c).to_pylist() for c in ("id", "uri")), strict=True))


def _funnel(ws: Workspace) -> dict:
    funnel = json.loads(ws.funnel_path(RECIPE).read_text())
    funnel.pop("seconds")
    return funnel


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    return str(small_corpus(tmp_path_factory.mktemp("s3src")).images_dir)


def test_s3_workspace_matches_a_local_one_end_to_end(images, tmp_path, s3_bucket, ray_session):
    remote = f"{s3_bucket}/{uuid.uuid4().hex[:8]}/ws"
    local = str(tmp_path / "ws")
    for where in (local, remote):
        out = _ok(["score", images, "-w", where, "--filters", FILTERS, "--rows-per-partition", "16"])
        assert "into 3 new shard(s)" in out
        _ok(["select", "-w", where, "--recipe", RECIPE])
        _ok(["export", "-w", where, "--recipe", RECIPE, "--format", "parquet"])
    s3_ws, local_ws = Workspace.at(remote), Workspace.at(local)
    assert isinstance(s3_ws.root, fs.ObjectPath)
    assert s3_ws.pool.read_manifest()["rows"] == local_ws.pool.read_manifest()["rows"] == 47
    assert _funnel(s3_ws) == _funnel(local_ws) and _funnel(s3_ws)["kept"] > 0
    assert _kept(s3_ws) == _kept(local_ws)

    # Resume on s3: every shard's marker is found and checked, nothing is re-scored.
    again = _ok(["score", images, "-w", remote, "--filters", FILTERS, "--rows-per-partition", "16"])
    assert "into 0 new shard(s); 3 shard(s) already complete" in again

    # The export holds the images themselves, byte for byte the local export's.
    def exported(ws: Workspace) -> list[tuple[str, bytes]]:
        folder = ws.export_dir(RECIPE, "parquet")
        tables = [fs.read_table(p, columns=["uri", "image"]) for p in sorted(folder.glob("part-*.parquet"))]
        return sorted(zip(*(pa.concat_tables(tables).column(c).to_pylist() for c in ("uri", "image")), strict=True))

    assert exported(s3_ws) == exported(local_ws) and len(exported(s3_ws)) == _funnel(s3_ws)["kept"]

    # Caption the selection (OCR text captions): curated shards read, captioned shards written on s3.
    captioned = _ok(["caption", "-w", remote, "--recipe", RECIPE, "--types", "text", "--json"])
    assert json.loads(captioned[captioned.index("{") :])["text"]["rows"] == _funnel(s3_ws)["kept"]

    # Index (LanceDB on s3) and search it.
    _ok(["index", "-w", remote])
    assert s3_ws.index_config_path.is_file()
    found = _ok(["search", "-w", remote, "--text", "a photo of a street", "-k", "3", "--json"])
    results = json.loads(found[found.index('{"') :])["results"]
    assert len(results) == 3 and all(r["id"] for r in results)

    # Train one step of the tiny CPU stage on the curated shards, streamed from s3; the checkpoint lands there.
    stage = cpu_scaled("stage1_tiny_cpu", tmp_path / "stage.yaml")
    trained = _ok(["train", "-w", remote, "--stage", str(stage), "--threads", "1"])
    assert "trained 1 steps" in trained and f"{_funnel(s3_ws)['kept']} rows" in trained
    assert (s3_ws.checkpoints_dir("stage1_tiny_cpu") / "step-0000001" / "state.json").is_file()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "bucket 'no-such-bucket' does not exist"),
        (
            {
                "AWS_ACCESS_KEY_ID": None,
                "AWS_SECRET_ACCESS_KEY": None,
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",  # nor a credentials file of the machine's
                "AWS_CONFIG_FILE": "/nonexistent",
            },
            "no S3 credentials",
        ),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "object store at http://127.0.0.1:9 failed"),
    ],
)
def test_unusable_object_store_is_one_error_line(images, s3_bucket, env, message):
    where = "s3://no-such-bucket/ws" if not env else f"{s3_bucket}/ws"
    result = runner.invoke(app, ["score", images, "-w", where, "--filters", FILTERS], env=env)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error:") and message in lines[0]
