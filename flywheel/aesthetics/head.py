"""The aesthetic head file: a small MLP over an L2-normalised image embedding, stored as safetensors.

One format serves the shipped head and every workspace head (`flywheel aesthetics fit`), so the filter loads
either the same way. Tensors `layer{i}.weight` (out x in) and `layer{i}.bias`, ReLU between layers, none after
the last (which has one output). Metadata records the embedding the head was trained on (`feature_version`):
a head is refused on another embedding instead of silently scoring noise. Inference is plain numpy: the head
is a few thousand multiply-adds per image, not worth a torch import in the scoring actor.

Score scale (`aesthetic_score` on this path): a Bradley-Terry utility. sigmoid(score_a - score_b) is the
modelled probability that image a is preferred over image b; the bias is shifted so that the mean score of
the clean (undegraded) training images is 0, and degraded images mostly score below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flywheel.errors import UserError

# The shared embedding the head reads (docs/aesthetics.md): EfficientNet-Lite0 pooled ImageNet features of
# the 224 px centre crop, L2-normalised. Changing the embedding means retraining (bench/aesthetics.py).
FEATURE_VERSION = "efficientnet-lite0-pooled-224-l2-v1"
FEATURE_DIM = 1280


class HeadFileError(UserError):
    """A head file is missing, unreadable or trained on another embedding."""


@dataclass
class Head:
    """Layer weights (out x in) and biases; `meta` is the provenance stored with the file."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def in_dim(self) -> int:
        return int(self.weights[0].shape[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Scores of the rows of `x` (n x in_dim) as float32, shape (n,)."""
        h = np.asarray(x, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.in_dim:
            raise ValueError(f"aesthetic head expects (n, {self.in_dim}) embeddings, got {h.shape}")
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w.T + b
            if i < last:
                h = np.maximum(h, 0.0)
        return h[:, 0].astype(np.float32)


def save_head(path: Path, head: Head) -> Path:
    """Write `head` as safetensors (no pickle: a head file from elsewhere cannot run code)."""
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(zip(head.weights, head.biases, strict=True)):
        tensors[f"layer{i}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
        tensors[f"layer{i}.bias"] = np.ascontiguousarray(b, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"feature_version": FEATURE_VERSION, **{k: str(v) for k, v in head.meta.items()}}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_head(path: str | Path, feature_version: str = FEATURE_VERSION) -> Head:
    """Read a head file; refuse one trained on another embedding or with a malformed layer stack."""
    from safetensors import SafetensorError, safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise HeadFileError(f"aesthetic head {str(path)!r} is not a file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError) as exc:
        raise HeadFileError(f"aesthetic head {str(path)!r} is not a safetensors file: {exc}") from exc
    if meta.get("feature_version") != feature_version:
        raise HeadFileError(
            f"{path}: head trained on embedding {meta.get('feature_version')!r}, the pipeline computes "
            f"{feature_version!r}; retrain it (`flywheel aesthetics fit` or bench/aesthetics.py)"
        )
    weights, biases = [], []
    while f"layer{len(weights)}.weight" in tensors:
        i = len(weights)
        weights.append(tensors[f"layer{i}.weight"].astype(np.float32))
        biases.append(tensors.get(f"layer{i}.bias", np.zeros(weights[-1].shape[0])).astype(np.float32))
    if not weights:
        raise HeadFileError(f"{path}: no layer0.weight tensor; not an aesthetic head")
    for i in range(1, len(weights)):
        if weights[i].shape[1] != weights[i - 1].shape[0]:
            raise HeadFileError(
                f"{path}: layer{i} takes {weights[i].shape[1]} inputs, layer{i - 1} gives {weights[i - 1].shape[0]}"
            )
    if weights[-1].shape[0] != 1:
        raise HeadFileError(f"{path}: the last layer must have one output, has {weights[-1].shape[0]}")
    return Head(weights, biases, meta)
