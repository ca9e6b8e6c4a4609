"""Content-based rotation detection from EfficientNet-Lite0 features, last stages fine-tuned (a model scorer).

Why a second detector: the sky prior of `filters/rotation.py` is cheap but reads one cue and measured 0.5
four-way accuracy. ImageNet features encode faces, horizons, gravity and text lines. The image is shown to the
network in its four rotations; one linear "uprightness" score, shared by the four candidates, rates each, and
a softmax over them gives the probability that each rotation undoes what was done to the image (a conditional
logit: the same model as the sky prior, on richer features). The shipped head also fine-tunes the
backbone's last five blocks (their weights travel in the head file, `tail.*`), trained self-supervised on 4,563
varied upright views (Debian and GCompris photos, drawings, object photos, scenes, documents, text in 10
scripts) by `bench/rotation_finetune.py`; report-split figures per category in `docs/rotation.md`.
`filters/rotation_embed.py` reads the shared embedding instead (one pass, no network of its own) and measured
weaker, so the stage-1 recipe rules on this one.

Cost: four backbone passes per image at 160 px (about a quarter of the FLOPs of one 320 px pass).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from filters.base import ModelScorer, ScorerUnavailable
from filters.config import ScoringConfig
from flywheel.errors import UserError
from flywheel.imaging import Decoded, square_centre_crop
from flywheel.schema import Column

VIEW = 160  # square side the backbone sees; prepare() centre-crops the displayed image to it
DEFAULT_HEAD = Path(__file__).parent / "data" / "rotation_net_head.safetensors"
FEATURE_VERSION = "efficientnet-lite0-pooled-160-rot4-v1"
# Blocks before this index keep their ImageNet weights; a head file may carry fine-tuned weights for the rest
# (tensors named "tail.blocks.N.*" for block FROZEN_BLOCKS + N, "tail.conv_head.*", "tail.bn1.*").
FROZEN_BLOCKS = 11
_TAIL = "tail."


def trunk(model: Any, x: Any) -> Any:
    """The frozen part of the backbone: stem and blocks [0, FROZEN_BLOCKS), the input of a fine-tuned tail."""
    h = model.act(model._bn0(model._conv_stem(x)))
    for block in model._blocks[:FROZEN_BLOCKS]:
        h = block(h)
    return h


def four_rotations(crops: np.ndarray) -> Any:
    """(n*4, 3, H, W) normalised float tensor: each uint8 (n, H, W, 3) crop turned clockwise by 0/90/180/270.

    The one definition of what the backbone sees, shared by the scorer and the benches that train its heads
    (their features must be the scorer's features). torch.rot90 with k=-r turns clockwise by r quarter turns.
    """
    import torch

    from flywheel.models.efficientnet_lite import MEAN, STD

    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return torch.stack([torch.rot90(x, k=-r, dims=(2, 3)) for r in range(4)], dim=1).flatten(0, 1)


def _backbone_key(tail_key: str) -> str:
    """'blocks.2.x' -> '_blocks.13.x', 'conv_head.weight' -> '_conv_head.weight', 'bn1.x' -> '_bn1.x'."""
    if tail_key.startswith("blocks."):
        index, rest = tail_key[len("blocks.") :].split(".", 1)
        return f"_blocks.{FROZEN_BLOCKS + int(index)}.{rest}"
    return f"_{tail_key}"


def candidate_order(shown: int) -> list[int]:
    """Indices into features of the image rotated clockwise by 0/90/180/270 that form the candidates.

    For an image shown rotated clockwise by `shown` quarter turns, candidate k (undo k quarter turns) is the
    image rotated by (shown - k) mod 4; so with features G of the upright image's four rotations, the
    candidates of the shown image are G[(shown - k) % 4].
    """
    return [(shown - k) % 4 for k in range(4)]


def save_head(
    path: Path,
    mean: np.ndarray,
    scale: np.ndarray,
    w: np.ndarray,
    meta: dict[str, str],
    tail: dict[str, np.ndarray] | None = None,
) -> None:
    """The linear uprightness score and, for a fine-tuned backbone, its tail weights (float32, safetensors)."""
    from safetensors.numpy import save_file

    tensors = {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32), "w": w.astype(np.float32)}
    for key, value in (tail or {}).items():
        tensors[_TAIL + key] = value if value.dtype == np.int64 else value.astype(np.float32)
    save_file(tensors, str(path), metadata={"feature_version": FEATURE_VERSION, **meta})


class RotationNetScorer(ModelScorer):
    """P(upright) and the predicted rotation from EfficientNet-Lite0 features of the four rotations."""

    name: ClassVar[str] = "rotation_net"
    config_section: ClassVar[str | None] = "rotation"
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "rotation_net_pred",
            pa.int16(),
            "degrees",
            "CNN estimate of the clockwise rotation applied to an upright image to give the displayed one "
            "(0, 90, 180, 270).",
            owner="rotation_net",
        ),
        Column(
            "rotation_net_upright_prob",
            pa.float32(),
            "probability",
            "CNN probability that the displayed (EXIF-transposed) image is upright.",
            owner="rotation_net",
        ),
    )
    view_short_side: ClassVar[int] = VIEW
    input_shape: ClassVar[tuple[int, ...]] = (VIEW, VIEW, 3)
    uses_gpu: ClassVar[bool] = True

    def __init__(
        self,
        head_path: str | Path | None = DEFAULT_HEAD,
        device: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"rotation_net.batch_size must be >= 1, got {batch_size}")
        self.head_path = Path(head_path) if head_path is not None else None
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self._model: Any = None
        self._head: dict[str, np.ndarray] | None = None
        self._tail: dict[str, np.ndarray] = {}

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> RotationNetScorer:
        return cls(head_path=cfg.rotation.net_head or DEFAULT_HEAD)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None  # each actor loads its own backbone
        return state

    def available(self) -> str | None:
        if self.head_path is None or self.head_path.is_file():
            return None
        return f"rotation_net not computed: rotation.net_head={str(self.head_path)!r} is not a file"

    def prepare(self, decoded: Decoded) -> np.ndarray:
        if decoded.rgb is None:
            raise ValueError("prepare() needs a decoded view; broken samples must be skipped by the caller")
        return square_centre_crop(decoded.rgb, VIEW)

    def load_backbone(self) -> None:
        import torch

        from flywheel.models.efficientnet_lite import load_efficientnet_lite0

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = device
        model = load_efficientnet_lite0("cpu")
        if self._tail:
            state = model.state_dict()
            for key, value in self._tail.items():
                name = _backbone_key(key)
                if name not in state or tuple(state[name].shape) != value.shape:
                    raise ScorerUnavailable(f"{self.head_path}: tail tensor {key!r} does not fit the backbone")
                state[name] = torch.from_numpy(value)
            model.load_state_dict(state, strict=True)
        self._model = model.eval().to(device)

    def load(self) -> None:
        if self._model is not None and self._head is not None:
            return
        message = self.available()
        if message is not None or self.head_path is None:
            raise ScorerUnavailable(message or "rotation_net needs a trained head (rotation.net_head)")
        from safetensors import safe_open

        with safe_open(str(self.head_path), framework="numpy") as f:
            version = (f.metadata() or {}).get("feature_version")
            if version != FEATURE_VERSION:
                raise ScorerUnavailable(
                    f"{self.head_path}: head trained on features {version!r}, this code computes "
                    f"{FEATURE_VERSION!r}; retrain with bench/train_rotation_net.py"
                )
            self._head = {k: f.get_tensor(k) for k in ("mean", "scale", "w")}
            self._tail = {k[len(_TAIL) :]: f.get_tensor(k) for k in f.keys() if k.startswith(_TAIL)}  # noqa: SIM118
        self._model = None  # a backbone loaded before the head would lack the fine-tuned tail
        self.load_backbone()

    def rotated_features(self, inputs: np.ndarray) -> np.ndarray:
        """(n, 4, 1280): backbone features of each input rotated clockwise by 0, 90, 180 and 270 degrees."""
        import torch

        if self._model is None:
            self.load_backbone()
        out = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            with torch.inference_mode():
                f = self._model.features(four_rotations(chunk).to(self._device))
            out.append(f.float().cpu().numpy().reshape(len(chunk), 4, -1))
        return np.concatenate(out) if out else np.zeros((0, 4, 1280), dtype=np.float32)

    def score(self, inputs: np.ndarray, captions: list[str | None]) -> dict[str, Sequence[Any]]:
        if self._head is None:
            self.load()
        assert self._head is not None
        if len(inputs) == 0:
            return {c.name: [] for c in self.columns}
        g = self.rotated_features(inputs)  # the displayed image's rotations = its candidates: k undoes k turns
        cand = g[:, [(-k) % 4 for k in range(4)]]
        s = ((cand - self._head["mean"]) / self._head["scale"]) @ self._head["w"]
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        pred = p.argmax(axis=1)
        return {
            "rotation_net_pred": (pred * 90).astype(np.int16).tolist(),
            "rotation_net_upright_prob": p[:, 0].astype(np.float32).tolist(),
        }


def head_metadata(path: Path = DEFAULT_HEAD) -> dict[str, str]:
    """Provenance stored with the shipped head (training data, CV figures, command)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {})


if __name__ == "__main__":  # pragma: no cover - a quick look at the shipped head's provenance
    print(json.dumps(head_metadata(), indent=2))
