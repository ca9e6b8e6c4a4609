"""End to end on a tiny pool with the real offline models: index (Ray Data + LanceDB), search, ingest, route,
tracks, the CLI and the Prefect `cycle` flow."""

import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from filters.registry import column_owners
from flywheel.recipes import load_recipe
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from pipelines.cli import app
from tests.images import encode, photo_like

runner = CliRunner()
PHOTOS = [
    ("chelsea", "a ginger tabby cat sitting on a sofa"),
    ("coffee", "a cup of coffee on a saucer"),
    ("rocket", "a white rocket on a launch pad"),
    ("astronaut", "a smiling astronaut in an orange spacesuit"),
    ("coins", "ancient coins arranged in rows"),
    ("camera", "a man with a film camera on a tripod"),
]


def _photo(name: str) -> bytes:
    import skimage.data

    return encode(getattr(skimage.data, name)()[:300, :300])


@pytest.fixture(scope="module")
def ws(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("loopws")
    images = [_photo(name) for name, _ in PHOTOS] + [b"broken"]
    captions = [c for _, c in PHOTOS] + ["a broken file"]
    n = len(images)
    table = pa.table(
        {
            "id": [f"id{i}" for i in range(n)],
            "uri": [f"/x/{i}.jpg" for i in range(n)],
            "partition": [0] * n,
            "task": ["T2I"] * n,
            "image": images,
            "caption": captions,
            "file_bytes": [len(b) for b in images],
            "broken_reason": pa.array([None] * (n - 1) + ["not_image"], pa.string()),
            "resolution_min_side": pa.array([280] * (n - 1) + [None], pa.int32()),
            "entropy_bits": pa.array([5.0, 5.0, 0.18, 5.0, 5.0, 5.0, None], pa.float32()),
        }
    )
    w = Workspace.at(root)
    ShardStore(w.pool_dir).write(0, table, "fp")
    # row 2 (rocket) is rejected by the entropy rule only
    select(w, load_recipe("stage1_256p"), known_columns=column_owners())
    result = runner.invoke(app, ["index", "-w", str(root)])
    assert result.exit_code == 0, result.output
    return w


def test_index_is_incremental_and_search_says_its_space(ws):
    again = runner.invoke(app, ["index", "-w", str(ws.root)], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "all-MiniLM" in again.output
    assert ws.index_config_path.is_file()  # `flywheel index` stores its config; search below reads it
    result = runner.invoke(app, ["search", "-w", str(ws.root), "--text", "a kitten", "-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = _json(result.output)
    assert out["space"].startswith("all-MiniLM-L6-v2") and all("cat" in r["caption"] for r in out["results"])
    filtered = runner.invoke(
        app, ["search", "-w", str(ws.root), "--text", "a rocket", "--where", "curated = false", "--json"]
    )
    rows = _json(filtered.output)["results"]
    assert {r["curated"] for r in rows} == {False} and rows[0]["id"] == "id2"
    by_id = _json(runner.invoke(app, ["search", "-w", str(ws.root), "--id", "id0", "-k", "1", "--json"]).output)
    assert by_id["space"].startswith("efficientnet-lite0") and by_id["results"][0]["id"] == "id0"
    bad = runner.invoke(app, ["search", "-w", str(ws.root), "--text", "x", "--id", "id0"])
    assert bad.exit_code == 2 and "exactly one" in bad.output


def test_cycle_flow_ingests_routes_and_writes_tracks(ws, tmp_path):
    (tmp_path / "rocket.png").write_bytes(encode(photo_like(64, 64, seed=3), "PNG"))
    fb = tmp_path / "feedback.jsonl"
    fb.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "prompt": "a rocket at night",
                    "image": "rocket.png",
                    "complaint": "it doesn't know what a rocket is",
                    "rating": 1,
                },
                {"prompt": "a zebra crossing a river at dawn", "rating": 1},
                {
                    "prompt": "two cats to the left of a sofa, no cushions",
                    "complaint": "ignored the second cat",
                    "rating": 2,
                },
            ]
        )
        + "\n"
    )
    result = runner.invoke(app, ["cycle", "-w", str(ws.root), str(fb), "--export", str(tmp_path / "cases.parquet")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["ingested"]["feedback.jsonl"]["added"] == 3 and report["exported"] == 3
    tracks = {c["prompt"]: c for c in _list(ws)}
    assert tracks["a rocket at night"]["track"] == "pretrain"
    assert tracks["a zebra crossing a river at dawn"]["track"] == "pretrain"
    assert tracks["two cats to the left of a sofa, no cushions"]["track"] == "prompt"
    expansion = report["tracks"]["pretrain"]
    assert expansion["written"] >= 1  # the entropy-rejected rocket is retrieved back
    import pyarrow.parquet as pq

    shard = pq.read_table(expansion["path"])
    assert (
        "id2" in shard.column("id").to_pylist()
        and "expansion_badcase_ids" in shard.column_names
        and "provenance" in shard.column_names
    )
    assert {"caption", "uri", "pool_row", "images_shard"} <= set(shard.column_names)
    assert "image" not in shard.column_names
    from pathlib import Path

    from flywheel.store.images import attach_bytes

    assert all(attach_bytes(shard, Path(expansion["path"])).column("image").to_pylist())  # bytes stay in the pool
    again = runner.invoke(app, ["cycle", "-w", str(ws.root), str(fb)])
    assert again.exit_code == 0 and '"added": 0' in again.output


def _json(output: str) -> dict:
    """The JSON line of a command's output (model loaders may print progress to the same stream)."""
    return json.loads(output[output.index('{"') :].strip())


def _list(ws):
    from flywheel.badcases import BadCaseStore

    return BadCaseStore.for_workspace(ws.root).list()
