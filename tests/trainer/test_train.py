"""The loop learns (a tiny model overfits a handful of samples) and resumes exactly."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from flywheel.workspace import Workspace
from tests.trainer.fixtures import fixture_rows, write_curated
from tests.trainer.tiny import tiny_stage
from trainer.checkpoint import list_checkpoints, load_checkpoint
from trainer.loop import ResumeError, Trainer, lr_at


def _quiet(_: str) -> None:
    pass


def test_tiny_model_overfits_a_handful_of_samples(tmp_path, minilm):
    write_curated(tmp_path, rows=fixture_rows(4, 0, sizes=((32, 32),)))
    cfg = tiny_stage(data={"t2i_ratio": 1.0, "uncond_dropout": 0.0}, train={"steps": 80})
    trainer = Trainer(cfg, Workspace.at(tmp_path), encoder=minilm, log=_quiet)
    batch, _ = next(trainer.batches())
    before = trainer.fixed_loss(batch)
    result = trainer.run()
    after = trainer.fixed_loss(batch)
    assert result.steps_run == 80
    assert after < 0.5 * before, f"loss {before:.3f} -> {after:.3f} did not halve"


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, minilm):
    cfg = tiny_stage(
        data={"aspect_ratios": [1.0, 1.5]},
        train={"steps": 12, "checkpoint_every": 6, "grad_accum": 2},
        schedule={"kind": "cosine", "warmup_steps": 3},
    )
    write_curated(tmp_path / "a", rows=fixture_rows(5, 3, sizes=((32, 32), (48, 32))))
    write_curated(tmp_path / "b", rows=fixture_rows(5, 3, sizes=((32, 32), (48, 32))))
    straight = Trainer(cfg, Workspace.at(tmp_path / "a"), encoder=minilm, log=_quiet)
    full = straight.run().losses

    first = Trainer(cfg, Workspace.at(tmp_path / "b"), encoder=minilm, log=_quiet)
    half = first.run(steps=6).losses
    del first
    second = Trainer(cfg, Workspace.at(tmp_path / "b"), encoder=minilm, log=_quiet)
    assert second.resume("latest")
    assert second.step == 6
    rest = second.run().losses
    assert len(half) + len(rest) == len(full) == 12
    assert max(abs(a - b) for a, b in zip(full, half + rest, strict=True)) <= 1e-6
    # the final weights agree as well
    a = straight.model.state_dict()
    b = second.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # the checkpoint is safetensors + plain JSON
    ckpt = list_checkpoints(tmp_path / "b" / "checkpoints" / cfg.name)[-1]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 12 and state["loader"]["batch"] == 24
    assert {p.name for p in ckpt.iterdir()} == {
        "model.safetensors",
        "ema.safetensors",
        "optimizer.safetensors",
        "state.json",
    }
    assert load_checkpoint(ckpt).optimizer["state"]


def test_resume_refuses_changed_shards(tmp_path, minilm):
    write_curated(tmp_path, rows=fixture_rows(4, 2, sizes=((32, 32),)))
    cfg = tiny_stage(train={"steps": 2, "checkpoint_every": 2})
    Trainer(cfg, Workspace.at(tmp_path), encoder=minilm, log=_quiet).run()
    write_curated(tmp_path, rows=fixture_rows(5, 2, sizes=((32, 32),)))
    with pytest.raises(ResumeError, match="curated shards changed"):
        Trainer(cfg, Workspace.at(tmp_path), encoder=minilm, log=_quiet).resume("latest")


def test_schedule_warms_up_then_decays():
    cfg = tiny_stage(schedule={"kind": "cosine", "warmup_steps": 10, "min_lr_ratio": 0.1}, train={"steps": 110})
    lrs = [lr_at(s, cfg) for s in range(110)]
    assert lrs[0] == pytest.approx(cfg.optim.lr / 10)
    assert max(lrs) == pytest.approx(cfg.optim.lr)
    assert lrs[-1] == pytest.approx(cfg.optim.lr * 0.1, rel=0.05)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(lrs[10:]))


def test_eval_loss_is_logged_at_intervals_and_leaves_training_unchanged(tmp_path, minilm):
    write_curated(tmp_path / "a", rows=fixture_rows(4, 0, sizes=((32, 32),)))
    write_curated(tmp_path / "b", rows=fixture_rows(4, 0, sizes=((32, 32),)))
    evaluated = Trainer(
        tiny_stage(data={"t2i_ratio": 1.0}, train={"steps": 10, "eval_every": 5}),
        Workspace.at(tmp_path / "a"),
        encoder=minilm,
    )
    plain = Trainer(
        tiny_stage(data={"t2i_ratio": 1.0}, train={"steps": 10, "eval_every": 0}),
        Workspace.at(tmp_path / "b"),
        encoder=minilm,
    )
    messages: list[str] = []
    evaluated.log = messages.append
    plain.log = _quiet
    with_eval, without = evaluated.run().losses, plain.run().losses
    assert max(abs(a - b) for a, b in zip(with_eval, without, strict=True)) <= 1e-6
    records = [json.loads(line) for line in evaluated.log_path.read_text().splitlines()]
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [5, 10]
    assert all(0.0 < r["eval_loss"] < 100.0 for r in evals)
    assert evals[-1]["eval_loss"] == pytest.approx(evaluated.fixed_loss(evaluated.eval_batch()), rel=1e-6)
    assert sum("eval loss" in m for m in messages) == 2
    assert not any("eval_loss" in json.loads(line) for line in plain.log_path.read_text().splitlines())
