"""Measured quality on the labeled generator: the broken-file and exact-duplicate filters must be exact."""

from corpus.quality import evaluate
from flywheel.workspace import Workspace
from pipelines.steps.score import score
from tests.datagen import small_corpus


def test_broken_and_exact_dedup_are_exact_and_others_are_measured(tmp_path, ray_session):
    info = small_corpus(tmp_path)
    ws = Workspace.at(tmp_path / "ws")
    score(
        str(info.images_dir),
        ws,
        filters=["broken", "resolution", "dedup", "entropy"],
        rows_per_partition=16,
        log=lambda m: None,
    )
    scores = {s.name: s for s in evaluate(ws.pool.shard_paths(), info.labels_path, info.images_dir)}
    for name in ("broken: any reason", "broken: reason matches label", "dedup: exact pairs"):
        s = scores[name]
        assert s.support > 0 and s.precision == 1.0 and s.recall == 1.0, (name, s)
    near = scores["dedup: near pairs (hamming <= 4)"]
    assert near.support > 0 and near.precision is not None and near.precision >= 0.9
    blank = scores["entropy: blank/near-empty (bits < 0.2)"]
    assert blank.support > 0 and blank.recall == 1.0
