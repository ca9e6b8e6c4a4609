"""The Ray Train entry runs the same loop under TorchTrainer (one gloo DDP rank here) and checkpoints."""

from __future__ import annotations

import pytest

from pipelines.steps.train_ray import train_on_ray
from tests.trainer.fixtures import fixture_rows, write_curated
from tests.trainer.tiny import tiny_stage


@pytest.mark.slow  # TorchTrainer start-up takes about a minute on a 2-core box; it runs in CI all the same
def test_torch_trainer_runs_a_stage(tmp_path, ray_session):
    write_curated(tmp_path, rows=fixture_rows(4, 2, sizes=((32, 32),)))
    cfg = tiny_stage("ray_tiny", train={"steps": 2, "checkpoint_every": 2})
    metrics = train_on_ray(cfg.to_dict(), tmp_path, num_workers=1, threads=1)
    assert metrics["step"] == 2 and metrics["world"] == 1
    assert (tmp_path / "checkpoints" / "ray_tiny" / "step-0000002" / "state.json").is_file()
