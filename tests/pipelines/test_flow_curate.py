"""The Prefect `curate` flow runs locally without a server and retries a failed scoring task."""

import pytest
from skimage import data

from flywheel.workspace import Workspace
from pipelines.flows import curate as curate_module
from pipelines.steps.score import ScoreFailed
from tests.images import encode


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i, photo in enumerate((data.astronaut(), data.coffee(), data.chelsea())):
        (src / f"img{i}.jpg").write_bytes(encode(photo))
        (src / f"img{i}.txt").write_text(f"photo number {i} of the demo set")
    (src / "broken.jpg").write_bytes(b"")
    return src


def test_curate_flow_scores_selects_and_retries_a_failed_shard(tmp_path, source, ray_session, monkeypatch):
    real_score = curate_module.run_score
    calls = {"n": 0}

    def flaky_score(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # as a lost worker would: the shards of this attempt did not complete
            raise ScoreFailed("1 partition(s) failed: [0]; re-run the same command to retry them")
        return real_score(*args, **kwargs)

    monkeypatch.setattr(curate_module, "run_score", flaky_score)
    ws = tmp_path / "ws"
    report = curate_module.curate(
        source=str(source), workspace=str(ws), filters=["broken", "resolution", "dedup"], rows_per_partition=2
    )
    assert calls["n"] == 2
    assert report["pool_rows"] == 4 and report["funnel"]["rows_in"] == 4
    assert report["funnel"]["removed_by_rule"]["broken"] == 1 and report["funnel"]["kept"] == 3
    assert Workspace.at(ws).funnel_path("stage1_256p").is_file()


def test_curate_flow_fails_at_once_on_a_user_error(tmp_path, monkeypatch):
    from flywheel.ingest.base import SourceError

    real_score = curate_module.run_score
    calls = {"n": 0}

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real_score(*args, **kwargs)

    monkeypatch.setattr(curate_module, "run_score", counted)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no samples found"):
        curate_module.curate(source=str(empty), workspace=str(tmp_path / "ws"))
    assert calls["n"] == 1  # a scheduled run fails on wrong input; retries are for failed runs only
