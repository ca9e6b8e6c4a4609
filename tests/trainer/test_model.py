"""MMDiT pieces: exact patchify, MSRoPE layout, identity at init, padding invariance, edit conditioning."""

from __future__ import annotations

import pytest
import torch

from flywheel.config import ConfigError
from trainer.config import MODEL_PRESETS, StageConfig, load_stage, model_config
from trainer.latents import PixelLatents, patchify, unpatchify
from trainer.model.mmdit import MMDiT
from trainer.model.rope import axes_dims, image_positions, text_positions


def _model(cond_dim: int = 16) -> MMDiT:
    torch.manual_seed(0)
    model = MMDiT(model_config("tiny"), in_channels=48, cond_dim=cond_dim)
    for p in model.parameters():  # leave adaLN-zero init so the output depends on every part
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def test_patchify_round_trips_exactly():
    x = torch.randn(2, 3, 32, 48)
    tokens, grid = patchify(x, 4)
    assert tokens.shape == (2, 8 * 12, 48) and (grid.height, grid.width) == (8, 12)
    assert torch.equal(unpatchify(tokens, grid, 4, 3), x)
    with pytest.raises(ValueError, match="divisible"):
        patchify(torch.randn(1, 3, 30, 32), 4)


def test_msrope_puts_text_on_the_diagonal_past_the_image():
    img = image_positions(4, 6)
    txt = text_positions(5, 4, 6)
    assert (txt[:, 0] == txt[:, 1]).all() and (txt[:, 1] == txt[:, 2]).all()
    assert txt.min() > img[:, 1:].max()
    assert (image_positions(4, 6, frame=1)[:, 0] == 1).all()
    assert sum(axes_dims(64)) == 64 and all(d % 2 == 0 for d in axes_dims(24))


def test_blocks_start_as_identity_and_output_starts_at_zero():
    model = MMDiT(model_config("tiny"), in_channels=48, cond_dim=16).eval()
    tokens, grid = PixelLatents(4).encode(torch.randn(2, 3, 32, 32))
    out = model(tokens, torch.rand(2), torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool), grid)
    assert out.shape == tokens.shape and torch.count_nonzero(out) == 0


def test_padding_tokens_do_not_change_the_output():
    model = _model()
    tokens, grid = PixelLatents(4).encode(torch.randn(1, 3, 32, 32))
    cond = torch.randn(1, 5, 16)
    t = torch.tensor([0.3])
    short = model(tokens, t, cond[:, :3], torch.ones(1, 3, dtype=torch.bool), grid)
    padded_cond = torch.cat([cond[:, :3], torch.randn(1, 2, 16)], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    padded = model(tokens, t, padded_cond, mask, grid)
    assert torch.allclose(short, padded, atol=1e-5)


def test_edit_source_tokens_condition_the_output():
    model = _model()
    tokens, grid = PixelLatents(4).encode(torch.randn(1, 3, 32, 32))
    cond, mask, t = torch.randn(1, 4, 16), torch.ones(1, 4, dtype=torch.bool), torch.tensor([0.5])
    a = model(tokens, t, cond, mask, grid, source=torch.randn_like(tokens))
    b = model(tokens, t, cond, mask, grid, source=torch.randn_like(tokens))
    assert a.shape == tokens.shape and not torch.allclose(a, b)


def test_configs_are_strict_and_stages_load():
    with pytest.raises(ConfigError, match="unknown config key"):
        StageConfig.from_dict({"name": "x", "optim": {"weight_deacy": 0.1}})
    with pytest.raises(ConfigError, match="unknown model preset"):
        model_config("huge")
    with pytest.raises(ConfigError, match="t2i_ratio"):
        StageConfig.from_dict({"name": "x", "data": {"t2i_ratio": 1.5}})
    stage = load_stage("pretrain_256_512")
    assert (stage.data.t2i_ratio, stage.data.uncond_dropout, stage.optim.weight_decay, stage.optim.grad_clip) == (
        0.9,
        0.1,
        0.001,
        1.0,
    )
    assert load_stage("continual_512_2048").data.t2i_ratio == 0.7
    assert set(MODEL_PRESETS) >= {"tiny", "base_300m", "large_1b"}
