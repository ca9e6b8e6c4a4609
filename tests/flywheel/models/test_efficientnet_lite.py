"""The shipped EfficientNet-Lite0 weights load strictly into our architecture and classify real photos."""

from __future__ import annotations

import torch
from PIL import Image
from skimage import data

from flywheel.models.efficientnet_lite import FEATURE_DIM, IMAGENET_CLASSES, load_efficientnet_lite0, preprocess


def test_classifies_scikit_image_photos_correctly():
    model = load_efficientnet_lite0()
    photos = {"chelsea": {"tabby", "tiger cat", "Egyptian cat"}, "coffee": {"espresso", "cup", "coffee mug"}}
    batch = preprocess([Image.fromarray(getattr(data, name)()) for name in photos])
    with torch.no_grad():
        top = model(batch).softmax(-1).topk(3).indices.tolist()
    for (name, expected), idx in zip(photos.items(), top, strict=True):
        assert IMAGENET_CLASSES[idx[0]] in expected, (name, [IMAGENET_CLASSES[i] for i in idx])


def test_features_are_pooled_vectors():
    model = load_efficientnet_lite0()
    x = preprocess([Image.new("RGB", (300, 200), "red"), Image.new("RGB", (50, 90), "blue")], size=224)
    assert x.shape == (2, 3, 224, 224)
    with torch.no_grad():
        f = model.features(x)
    assert f.shape == (2, FEATURE_DIM)
    assert not torch.allclose(f[0], f[1])
    assert len(IMAGENET_CLASSES) == 1000
