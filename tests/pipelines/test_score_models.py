"""Safety filters must not switch off: a configured model that cannot load is an error, and the shard
fingerprint covers the filter set and model config, so a fixed config re-scores instead of skipping."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from filters.base import ModelConfigError
from filters.config import ClipConfig, NsfwConfig, RotationConfig, ScoringConfig
from filters.registry import FILTERS, scoring_fingerprint
from flywheel.imaging import DecodeLimits
from flywheel.workspace import Workspace
from pipelines.cli import app
from pipelines.steps.score import score
from tests.images import encode, photo_like


def _folder(root: Path, n: int = 4) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"p{i}.png").write_bytes(encode(photo_like(64, 48, seed=i), "PNG"))
        (root / f"p{i}.txt").write_text(f"photo {i}")
    return root


@pytest.mark.parametrize(
    ("filters", "cfg", "key"),
    [
        (["nsfw"], ScoringConfig(nsfw=NsfwConfig(model_path="/nonexistent/open-nsfw.onnx")), "nsfw.model_path"),
        (["rotation"], ScoringConfig(rotation=RotationConfig(weights="/nonexistent/rot.json")), "rotation.weights"),
        (["rotation_net"], ScoringConfig(rotation=RotationConfig(net_head="/nonexistent/h.st")), "rotation.net_head"),
        (["clip"], ScoringConfig(clip=ClipConfig(checkpoint="/nonexistent/clip.safetensors")), "clip.checkpoint"),
    ],
)
def test_a_configured_model_that_cannot_load_is_an_error(tmp_path, filters, cfg, key):
    src = _folder(tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws")
    with pytest.raises(ModelConfigError, match=key.replace(".", r"\.")):
        score(str(src), ws, filters=filters, cfg=cfg, log=lambda m: None)
    assert not ws.pool.shard_paths()  # refused before anything was written


def test_cli_missing_model_is_one_line_and_exit_2(tmp_path):
    src = _folder(tmp_path / "src")
    config = tmp_path / "scoring.yaml"
    config.write_text("nsfw:\n  model_path: /nonexistent/open-nsfw.onnx\n")
    result = CliRunner().invoke(
        app, ["score", str(src), "--workspace", str(tmp_path / "ws"), "--config", str(config), "--filters", "nsfw"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "nsfw.model_path" in lines[0] and "Traceback" not in result.output


def test_fingerprint_covers_filter_set_and_model_config(tmp_path):
    base = ScoringConfig()
    fp = scoring_fingerprint(FILTERS, base)
    assert fp == scoring_fingerprint(FILTERS, ScoringConfig())
    assert fp != scoring_fingerprint(FILTERS[:-1], base)
    assert fp != scoring_fingerprint(FILTERS, ScoringConfig(nsfw=NsfwConfig(model_path=str(tmp_path / "m.onnx"))))
    assert fp != scoring_fingerprint(FILTERS, ScoringConfig(clip=ClipConfig(checkpoint="x.safetensors")))
    # where a model runs is not what it computes
    assert fp == scoring_fingerprint(FILTERS, ScoringConfig(nsfw=NsfwConfig(device="cpu", batch_size=4)))
    weights = tmp_path / "w.json"
    weights.write_text("{}")
    before = scoring_fingerprint(FILTERS, ScoringConfig(rotation=RotationConfig(weights=str(weights))))
    weights.write_text('{"retrained": true}')
    assert before != scoring_fingerprint(FILTERS, ScoringConfig(rotation=RotationConfig(weights=str(weights))))


def test_rerun_with_another_config_rescores_and_same_config_skips(tmp_path, ray_session):
    src = _folder(tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws")
    names = ["broken", "resolution", "dedup"]

    def run(cfg: ScoringConfig):
        return score(str(src), ws, filters=names, cfg=cfg, rows_per_partition=2, log=lambda m: None)

    first = run(ScoringConfig())
    assert (first.written, first.skipped) == (2, 0)
    again = run(ScoringConfig())
    assert (again.written, again.skipped) == (0, 2)
    changed = run(ScoringConfig(limits=DecodeLimits(max_pixels=100_000_000)))  # decode limits decide scores
    assert (changed.written, changed.skipped) == (2, 0)  # scored again, not kept from the old config
    phash = pq.read_table(ws.pool.shard_paths(), columns=["dedup_phash"]).column("dedup_phash")
    assert phash.null_count == 0


def test_progress_advances_as_partitions_complete(tmp_path, ray_session):
    """Shards complete while the run goes on, not all in one burst at the end (the bar sat at 0/N)."""
    import time

    src = _folder(tmp_path / "src", n=16)
    calls: list[tuple[float, int]] = []
    score(
        str(src),
        Workspace.at(tmp_path / "ws"),
        filters=["broken", "nsfw"],
        rows_per_partition=2,
        progress=lambda done, total: calls.append((time.perf_counter(), done)),
        log=lambda m: None,
    )
    # One call per completed shard, in order (the bar moves 1/8, 2/8, ...). Whether they also arrive spread out
    # in time depends on the machine's speed; the fixed model-stage batching that held them back is gone.
    assert [done for _, done in calls] == list(range(9))


def test_embedding_filters_run_on_one_shared_pass(tmp_path, ray_session):
    """`--filters aesthetics` computes image_embedding once and the head scores it in the same actor."""
    import json

    import numpy as np

    src = _folder(tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws")
    result = score(str(src), ws, filters=["aesthetics"], rows_per_partition=2, log=lambda m: None)
    assert result.rows_written == 4 and not result.unavailable
    table = pq.read_table(ws.pool.shard_paths(), columns=["image_embedding", "aesthetic_score"])
    emb = np.array(table.column("image_embedding").to_pylist(), dtype=np.float32)
    assert emb.shape == (4, 1280) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert table.column("aesthetic_score").null_count == 0
    assert {"embedding", "aesthetics"} <= set(result.counters)  # the run log lists both scorers' time
    assert result.counters["aesthetics"]["rows"] == 4
    log = json.loads(next(ws.runs_dir.glob("*-score.json")).read_text())
    assert log["counters"]["embedding"]["seconds"] > 0


def test_gpu_model_scorers_share_one_device_by_default():
    """Several GPU model scorers split one GPU (fractional shares) instead of each waiting for a whole one."""
    from filters.config import RuntimeConfig
    from filters.embedding import ImageEmbeddingScorer
    from filters.nsfw import NsfwScorer
    from filters.rotation_net import RotationNetScorer
    from flywheel.errors import UserError
    from pipelines.steps.score import model_resources

    models = [NsfwScorer, RotationNetScorer, ImageEmbeddingScorer]
    gpu_names = {c.name for c in models if c.uses_gpu}
    shared = model_resources(models, ScoringConfig(), cuda=True)
    assert sum(g for _, g in shared.values()) == pytest.approx(1.0)  # all of them fit on one device
    assert all(shared[n] == (0.0, pytest.approx(1 / len(gpu_names))) for n in gpu_names)
    assert all(c == pytest.approx(1.0) for n, (c, _) in shared.items() if n not in gpu_names)
    whole = model_resources(models, ScoringConfig(runtime=RuntimeConfig(gpu_share=1)), cuda=True)
    assert all(whole[n] == (0.0, 1.0) for n in gpu_names)
    on_cpu = model_resources(models, ScoringConfig(), cuda=False)
    assert sum(c for c, _ in on_cpu.values()) == pytest.approx(1.0) and all(g == 0 for _, g in on_cpu.values())
    with pytest.raises(UserError, match="gpu_share"):
        model_resources(models, ScoringConfig(runtime=RuntimeConfig(gpu_share=-0.5)), cuda=True)
