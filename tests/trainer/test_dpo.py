"""Diffusion-DPO on flow matching: the loss math, a tiny run on synthetic pairs, and exact resume."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from flywheel.config import ConfigError
from flywheel.workspace import Workspace
from pipelines.cli import app
from tests.trainer.fixtures import fixture_rows, pair_rows, write_curated, write_pairs
from tests.trainer.tiny import tiny_stage
from trainer.checkpoint import list_checkpoints
from trainer.config import load_stage
from trainer.flow import dpo_loss, noisy_pair
from trainer.loop import REFERENCE_FILE, Trainer


def _quiet(_: str) -> None:
    pass


def _tensors(b=3, n=5, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    chosen, rejected, noise = (torch.randn(b, n, c, generator=g) for _ in range(3))
    return chosen, rejected, torch.rand(b, generator=g), noise


def test_loss_is_log2_when_policy_equals_reference():
    chosen, rejected, t, noise = _tensors()
    net = torch.nn.Linear(4, 4)
    velocity = lambda x, tt: net(x)  # noqa: E731
    loss, stats = dpo_loss(velocity, velocity, chosen, rejected, t, noise, beta=500.0)
    loss = loss.detach()
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
    assert float(stats["diff"]) == pytest.approx(0.0, abs=1e-7)


def test_loss_falls_as_the_policy_fits_the_chosen_image_better():
    chosen, rejected, t, noise = _tensors()
    _, v_chosen = noisy_pair(chosen, t, noise)
    b = chosen.shape[0]

    def reference(x, tt):
        return torch.zeros_like(x)

    def policy(alpha):
        # moves toward the chosen images' true velocity by `alpha`, unchanged on the rejected half
        return lambda x, tt: torch.cat([alpha * v_chosen, torch.zeros_like(x[b:])])

    losses = [float(dpo_loss(policy(a), reference, chosen, rejected, t, noise, beta=2.0)[0]) for a in (0, 0.2, 0.5, 1)]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-6)
    assert all(a > b for a, b in itertools.pairwise(losses)), losses
    # fitting the rejected image better instead raises the loss above log 2
    worse = lambda x, tt: torch.cat([torch.zeros_like(x[:b]), noisy_pair(rejected, t, noise)[1]])  # noqa: E731
    assert float(dpo_loss(worse, reference, chosen, rejected, t, noise, beta=2.0)[0]) > math.log(2)


def test_gradient_steps_on_the_dpo_loss_raise_the_implicit_accuracy():
    chosen, rejected, t, noise = _tensors(b=8, seed=1)
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 4)
    ref = torch.nn.Linear(4, 4)
    ref.load_state_dict(net.state_dict())
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        loss, stats = dpo_loss(lambda x, tt: net(x), lambda x, tt: ref(x), chosen, rejected, t, noise, beta=20.0)
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first - 0.1 and float(stats["implicit_acc"]) > 0.5


def _base_and_pairs(root, minilm):
    """A tiny pretrained base checkpoint and synthetic pairs in tracks/rl."""
    write_curated(root, rows=fixture_rows(6, 0, sizes=((32, 32),)))
    base = tiny_stage("base_tiny", data={"t2i_ratio": 1.0}, train={"steps": 6, "checkpoint_every": 6})
    Trainer(base, Workspace.at(root), encoder=minilm, log=_quiet).run()
    write_pairs(root, pair_rows(8))


def _dpo_stage(**train):
    return tiny_stage(
        "dpo_tiny",
        kind="dpo",
        dpo={"beta": 200.0},
        data={"t2i_ratio": 1.0, "uncond_dropout": 0.0},
        optim={"lr": 1e-3},
        train={"init_from": "base_tiny", "steps": 8, "checkpoint_every": 4, **train},
    )


def test_tiny_dpo_run_starts_at_log2_learns_the_preference_and_keeps_the_reference_frozen(tmp_path, minilm):
    _base_and_pairs(tmp_path, minilm)
    trainer = Trainer(_dpo_stage(steps=30, checkpoint_every=30), Workspace.at(tmp_path), encoder=minilm, log=_quiet)
    batch, _ = next(trainer.batches())
    assert batch.rejected is not None and batch.rejected.shape == batch.images.shape

    def held_out_diff():
        saved = trainer.generator.get_state()
        trainer.generator.manual_seed(99)
        with torch.no_grad():
            out = sum(float(trainer.pair_loss(batch)[2]["diff"]) for _ in range(4)) / 4
        trainer.generator.set_state(saved)
        return out

    assert held_out_diff() == pytest.approx(0.0, abs=1e-9)  # policy == reference
    result = trainer.run()
    assert result.losses[0] == pytest.approx(math.log(2), abs=1e-5)
    assert sum(result.losses[-5:]) / 5 < math.log(2) - 0.05, result.losses
    assert held_out_diff() < 0  # the policy now fits chosen images better than rejected ones, vs the reference
    base = list_checkpoints(tmp_path / "checkpoints" / "base_tiny")[-1]
    ckpt = list_checkpoints(tmp_path / "checkpoints" / "dpo_tiny")[-1]
    ref = load_file(ckpt / REFERENCE_FILE)
    init = load_file(base / "ema.safetensors")
    assert all(torch.equal(ref[k], init[k]) for k in init)  # frozen copy of the starting checkpoint


def test_dpo_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, minilm):
    for name in ("a", "b"):
        _base_and_pairs(tmp_path / name, minilm)
    cfg = _dpo_stage(grad_accum=2)
    full = Trainer(cfg, Workspace.at(tmp_path / "a"), encoder=minilm, log=_quiet).run().losses
    first = Trainer(cfg, Workspace.at(tmp_path / "b"), encoder=minilm, log=_quiet)
    half = first.run(steps=4).losses
    del first  # "killed" after its step-4 checkpoint
    second = Trainer(cfg, Workspace.at(tmp_path / "b"), encoder=minilm, log=_quiet)
    assert second.resume("latest") and second.step == 4
    rest = second.run().losses
    assert len(full) == len(half + rest) == 8
    assert max(abs(a - b) for a, b in zip(full, half + rest, strict=True)) <= 1e-6


def test_dpo_stage_needs_a_starting_checkpoint(tmp_path, minilm):
    write_pairs(tmp_path, pair_rows(2))
    with pytest.raises(ConfigError, match="init_from"):
        Trainer(_dpo_stage(init_from=None), Workspace.at(tmp_path), encoder=minilm, log=_quiet)


def test_flywheel_train_stage_rl_dpo(tmp_path, minilm):
    assert load_stage("rl_dpo").kind == "dpo"
    _base_and_pairs(tmp_path, minilm)
    cfg = load_stage("rl_dpo").replace(data={"resolutions": [32], "aspect_ratios": [1.0]})
    stage = tmp_path / "rl_dpo.yaml"
    stage.write_text(yaml.safe_dump(cfg.to_dict()))
    args = ["train", "-w", str(tmp_path), "--stage", str(stage), "--steps", "3", "--threads", "1"]
    res = CliRunner().invoke(app, [*args, "--init-from", "base_tiny"])
    assert res.exit_code == 0, res.output
    assert "trained 3 steps" in res.output
    assert (tmp_path / "checkpoints" / "rl_dpo" / "step-0000003" / REFERENCE_FILE).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["train", "-w", str(empty), "--stage", "rl_dpo", "--init-from", "x"])
    assert res.exit_code == 2 and "Traceback" not in res.output
