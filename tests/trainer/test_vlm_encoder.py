"""The VLM condition encoder: a tiny random-weight Qwen2-VL loaded from disk conditions training and edits."""

from __future__ import annotations

import pytest
from PIL import Image

from flywheel.config import ConfigError
from flywheel.workspace import Workspace
from tests.trainer.fixtures import draw_shape, fixture_rows, write_curated
from tests.trainer.tiny import tiny_stage
from tests.trainer.tiny_vlm import save_tiny_qwen2_vl
from trainer.config import EncoderConfig
from trainer.encoders import VLMCondition
from trainer.generate import load_pipeline
from trainer.loop import Trainer


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return save_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


def test_vlm_hidden_states_see_the_source_image(vlm_dir):
    enc = VLMCondition(EncoderConfig(kind="vlm", path=str(vlm_dir)), "cpu")
    text, mask = enc.encode(["make it blue"], None, 64)
    red, _ = enc.encode(["make it blue"], [Image.new("RGB", (56, 56), "red")], 64)
    blue, _ = enc.encode(["make it blue"], [Image.new("RGB", (56, 56), "blue")], 64)
    assert text.shape[-1] == enc.dim == 32 and mask.all()
    assert red.shape[1] > text.shape[1]  # image tokens joined the sequence
    assert not (red - blue).abs().max() < 1e-6  # and they carry the image


def test_training_and_editing_with_the_vlm_encoder(tmp_path, vlm_dir):
    write_curated(tmp_path, rows=fixture_rows(2, 4, sizes=((32, 32),)))
    cfg = tiny_stage(
        encoder={"kind": "vlm", "path": str(vlm_dir)},
        data={"t2i_ratio": 0.3},
        train={"steps": 3, "checkpoint_every": 3},
    )
    result = Trainer(cfg, Workspace.at(tmp_path), log=lambda _: None).run()
    assert len(result.losses) == 3 and all(loss > 0 for loss in result.losses)
    pipe = load_pipeline(result.checkpoints[-1], device="cpu")
    out = pipe.generate(["make it blue"], [0], steps=2, sources=[draw_shape("circle", "red", (32, 32))])
    assert out[0].size == (32, 32)


def test_vlm_without_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"encoder\.path"):
        VLMCondition(EncoderConfig(kind="vlm", path=str(tmp_path)), "cpu")
