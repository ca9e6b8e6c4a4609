"""Tests of the CNN rotation detector: shipped head, output columns, rotation equivariance, bad heads.

Accuracy is not asserted here (it is measured on the report split by bench/train_rotation_net.py and written
to docs/rotation.md); these tests check that the scorer is wired as the model says: the four candidates are
the image's own rotations, so rotating the input a quarter turn moves the prediction by 90 degrees.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from filters.base import ScorerUnavailable
from filters.rotation_net import DEFAULT_HEAD, FEATURE_VERSION, RotationNetScorer, head_metadata, save_head
from flywheel.imaging import decode, encode_jpeg


@pytest.fixture(scope="module")
def scorer() -> RotationNetScorer:
    s = RotationNetScorer()
    s.load()
    return s


def _prepared(scorer: RotationNetScorer, rgb: np.ndarray) -> np.ndarray:
    return scorer.prepare(decode(encode_jpeg(rgb, quality=92), view_short_side=scorer.view_short_side))


def test_shipped_head_has_provenance():
    meta = head_metadata(DEFAULT_HEAD)
    assert meta["feature_version"] == FEATURE_VERSION
    assert {"threshold", "data", "report_split", "command"} <= set(meta)


def test_columns_and_rotation_equivariance(scorer):
    photo = np.ascontiguousarray(data.astronaut())
    shown = [np.ascontiguousarray(np.rot90(photo, -k)) for k in range(4)]  # clockwise by 90k
    inputs = np.stack([_prepared(scorer, s) for s in shown])
    out = scorer(inputs, [None] * 4)
    probs = out["rotation_net_upright_prob"]
    preds = out["rotation_net_pred"]
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert set(preds) <= {0, 90, 180, 270}
    # The candidates of a rotated image are a permutation of the upright image's: predictions rotate along.
    assert [(p - preds[0]) % 360 for p in preds] == [0, 90, 180, 270]


def test_head_for_other_features_is_refused(tmp_path):
    path = tmp_path / "head.safetensors"
    save_head(path, np.zeros(1280), np.ones(1280), np.zeros(1280), {"command": "test"})
    # Rewrite with a wrong feature version.
    from safetensors.numpy import save_file

    save_file(
        {"mean": np.zeros(1280, np.float32), "scale": np.ones(1280, np.float32), "w": np.zeros(1280, np.float32)},
        str(path),
        metadata={"feature_version": "other"},
    )
    with pytest.raises(ScorerUnavailable, match="retrain"):
        RotationNetScorer(head_path=path).load()
    missing = RotationNetScorer(head_path=tmp_path / "nope.safetensors")
    assert "rotation.net_head" in (missing.available() or "")


def test_fine_tuned_tail_is_loaded_into_the_backbone(tmp_path):
    """A head file's tail tensors replace the ImageNet weights of the blocks after FROZEN_BLOCKS, and only those."""
    import torch

    from filters.rotation_net import FROZEN_BLOCKS
    from flywheel.models.efficientnet_lite import load_efficientnet_lite0

    imagenet = load_efficientnet_lite0("cpu").state_dict()
    w = imagenet["_conv_head.weight"].numpy()
    tail = {"conv_head.weight": (w * 0.5).astype(np.float32), "blocks.0._bn2.bias": np.full(192, 0.25, np.float32)}
    path = tmp_path / "head.safetensors"
    save_head(path, np.zeros(1280), np.ones(1280), np.ones(1280), {"command": "test"}, tail)
    s = RotationNetScorer(head_path=path)
    s.load()
    state = s._model.state_dict()
    assert torch.equal(state["_conv_head.weight"], torch.from_numpy(w * 0.5))
    assert torch.equal(state[f"_blocks.{FROZEN_BLOCKS}._bn2.bias"], torch.full((192,), 0.25))
    assert torch.equal(state["_blocks.0._depthwise_conv.weight"], imagenet["_blocks.0._depthwise_conv.weight"])

    bad = tmp_path / "bad.safetensors"
    save_head(bad, np.zeros(1280), np.ones(1280), np.ones(1280), {"command": "test"}, {"conv_head.weight": w[:3]})
    with pytest.raises(ScorerUnavailable, match="does not fit"):
        RotationNetScorer(head_path=bad).load()
