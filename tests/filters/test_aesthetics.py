"""The aesthetic filter: head file format, the shipped head on real photos, the LAION path on tiny weights."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from filters.aesthetics import DEFAULT_HEAD, AestheticsScorer, load_predictor
from filters.base import ModelConfigError
from filters.config import AestheticsConfig, ScoringConfig
from flywheel.aesthetics.degrade import DEGRADATIONS, build_pairs, clean_views
from flywheel.aesthetics.head import FEATURE_DIM, Head, HeadFileError, load_head, save_head
from flywheel.aesthetics.train import FitConfig, fit_head, pairwise_accuracy


def _random_head(rng: np.random.Generator, dims: tuple[int, ...] = (FEATURE_DIM, 8, 1)) -> Head:
    ws = [rng.normal(size=(dims[i + 1], dims[i])).astype(np.float32) for i in range(len(dims) - 1)]
    bs = [rng.normal(size=dims[i + 1]).astype(np.float32) for i in range(len(dims) - 1)]
    return Head(ws, bs, {"note": "test"})


def test_head_roundtrip_and_forward(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    head = _random_head(rng)
    path = save_head(tmp_path / "h.safetensors", head)
    loaded = load_head(path)
    x = rng.normal(size=(5, FEATURE_DIM)).astype(np.float32)
    expected = np.maximum(x @ head.weights[0].T + head.biases[0], 0) @ head.weights[1].T + head.biases[1]
    np.testing.assert_allclose(loaded(x), expected[:, 0], rtol=1e-5, atol=1e-5)
    assert loaded.meta["note"] == "test"


def test_head_refuses_other_embedding_and_garbage(tmp_path: Path) -> None:
    path = save_head(tmp_path / "h.safetensors", _random_head(np.random.default_rng(1)))
    with pytest.raises(HeadFileError, match="retrain"):
        load_head(path, feature_version="some-other-embedding")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    scorer = AestheticsScorer(AestheticsConfig(head=str(bad)))
    with pytest.raises(ModelConfigError, match="not a safetensors file"):
        scorer.load()
    missing = AestheticsScorer(AestheticsConfig(head=str(tmp_path / "nope.safetensors")))
    assert "is not a file" in (missing.available() or "")


def test_score_embeddings_nulls_undecodable_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    head = _random_head(rng)
    path = save_head(tmp_path / "h.safetensors", head)
    scorer = AestheticsScorer.from_config(ScoringConfig(aesthetics=AestheticsConfig(head=str(path))))
    emb = rng.normal(size=(3, FEATURE_DIM)).astype(np.float32)
    out = scorer(emb, np.array([True, False, True]), [None] * 3)["aesthetic_score"]
    assert out[1] is None
    np.testing.assert_allclose([out[0], out[2]], head(emb[[0, 2]]), rtol=1e-5)
    assert scorer.counters.rows == 3 and scorer.counters.nulls == 1


def test_degradations_change_the_view_deterministically() -> None:
    from skimage import data

    rgb = data.coffee()[::2, ::2]
    a = build_pairs([("coffee", rgb)], views_per_photo=1, seed=3)
    b = build_pairs([("coffee", rgb)], views_per_photo=1, seed=3)
    assert a.kind == list(DEGRADATIONS)
    clean = a.views[a.good[0]].astype(np.float32)
    for i, kind in enumerate(a.kind):
        degraded = a.views[a.bad[i]]
        np.testing.assert_array_equal(degraded, b.views[b.bad[i]])
        assert min(degraded.shape[:2]) == min(clean.shape[:2]), kind
        if degraded.shape == clean.shape:
            assert np.abs(degraded.astype(np.float32) - clean).mean() > 3.0, kind
    assert len(clean_views(rgb, 3, np.random.default_rng(0))) == 3


def test_fit_head_orders_pairs_and_is_deterministic() -> None:
    rng = np.random.default_rng(4)
    direction = rng.normal(size=16)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    u = x @ direction
    good = np.arange(0, 200, 2)
    bad = np.arange(1, 200, 2)
    swap = u[good] < u[bad]
    good, bad = np.where(swap, bad, good), np.where(swap, good, bad)
    cfg = FitConfig(hidden=8, steps=120, seed=1)
    h1 = fit_head(x[:, :16], good, bad, anchor=good, cfg=cfg)
    h2 = fit_head(x[:, :16], good, bad, anchor=good, cfg=cfg)
    np.testing.assert_array_equal(h1(x), h2(x))
    assert pairwise_accuracy(h1(x), good, bad) > 0.95
    assert abs(float(h1(x[good]).mean())) < 1e-4  # anchored: clean rows average 0


def _held_out_photo() -> tuple[str, np.ndarray]:
    """A scikit-image photo whose group the shipped head was not trained on (bench/aesthetics.py split)."""
    from skimage import data

    for group, loader in (("sk_chelsea", data.chelsea), ("sk_coffee", data.coffee), ("sk_rocket", data.rocket)):
        if zlib.crc32(group.encode()) % 4 == 0:
            return group, loader()
    pytest.skip("no held-out scikit-image photo in this split")


def test_shipped_head_prefers_clean_over_damaged_held_out_photo() -> None:
    assert DEFAULT_HEAD.is_file()
    meta = load_head(DEFAULT_HEAD).meta
    assert "held_out_accuracy" in meta and "command" in meta
    _, rgb = _held_out_photo()
    img = Image.fromarray(rgb)
    blurred = np.asarray(img.filter(ImageFilter.GaussianBlur(4)))
    noisy = np.clip(rgb + np.random.default_rng(0).normal(0, 40, rgb.shape), 0, 255).astype(np.uint8)
    washed = (rgb * 0.3 + 190 * 0.7).astype(np.uint8)
    scores = AestheticsScorer().score_images([rgb, blurred, noisy, washed, None])
    assert scores[4] is None
    assert all(scores[0] > s for s in scores[1:4]), scores


# --- LAION path on tiny random weights -----------------------------------------------------------------------


def _laion_like_predictor(path: Path, dim: int, seed: int = 0) -> Path:
    """A random predictor with the improved LAION MLP's key names (layers.0/2/4/6/7, Dropout between)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    sizes = [(0, dim, 24), (2, 24, 12), (4, 12, 8), (6, 8, 4), (7, 4, 1)]
    tensors = {}
    for idx, n_in, n_out in sizes:
        tensors[f"layers.{idx}.weight"] = (rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
        tensors[f"layers.{idx}.bias"] = rng.normal(size=n_out).astype(np.float32)
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from filters.clip_tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def test_laion_path_scores_with_clip_and_predictor(tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    import open_clip
    import torch

    config_path, ckpt = tiny_clip
    pred = _laion_like_predictor(tmp_path / "pred.safetensors", dim=32)
    cfg = AestheticsConfig(checkpoint=str(ckpt), model_config=str(config_path), predictor=str(pred), device="cpu")
    scorer = AestheticsScorer(cfg)
    assert scorer.needs_pixels and scorer.available() is None and scorer.input_shape == (64, 64, 3)
    rng = np.random.default_rng(5)
    rgbs = [rng.integers(0, 255, size=(80, 96, 3), dtype=np.uint8) for _ in range(3)]
    scores = scorer.score_images([rgbs[0], None, rgbs[1], rgbs[2]])
    assert scores[1] is None and all(isinstance(s, float) for s in (scores[0], scores[2], scores[3]))

    # The same number by hand: open_clip's own preprocess and encode_image, normalise, chain the linears.
    model, _, preprocess = open_clip.create_model_and_transforms(
        "flywheel-tiny-clip", pretrained=str(ckpt.resolve()), device="cpu"
    )
    with torch.inference_mode():
        f = model.encode_image(torch.stack([preprocess(Image.fromarray(r)) for r in rgbs])).float()
    f = torch.nn.functional.normalize(f, dim=-1).numpy()
    expected = load_predictor(pred)(f)
    np.testing.assert_allclose([scores[0], scores[2], scores[3]], expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(RuntimeError, match="LAION"):
        scorer.score_embeddings(np.zeros((1, FEATURE_DIM), np.float32), np.ones(1, bool), [None])


def test_laion_predictor_pth_and_config_errors(tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    config_path, ckpt = tiny_clip
    lin = torch.nn.Linear(32, 1)
    torch.save(lin.state_dict(), tmp_path / "v1.pth")
    head = load_predictor(tmp_path / "v1.pth")
    x = np.random.default_rng(6).normal(size=(2, 32)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(head(x), lin(torch.from_numpy(x))[:, 0].numpy(), rtol=1e-5, atol=1e-6)

    only_ckpt = AestheticsScorer(AestheticsConfig(checkpoint=str(ckpt), model_config=str(config_path)))
    assert "needs both" in (only_ckpt.available() or "")
    with pytest.raises(ModelConfigError, match="needs both"):
        only_ckpt.load()
    wrong_dim = _laion_like_predictor(tmp_path / "p768.safetensors", dim=768)
    cfg = AestheticsConfig(checkpoint=str(ckpt), model_config=str(config_path), predictor=str(wrong_dim))
    with pytest.raises(ModelConfigError, match="768"):
        AestheticsScorer(cfg).load()
