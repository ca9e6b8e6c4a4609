"""Typed trainer configuration: model presets and stage YAMLs.

Why typed dataclasses with strict keys: a stage YAML is the record of what a training run did, so a misspelt
key (`weight_deacy`) must be an error, not a silently ignored default. Stage YAMLs ship as package data in
`trainer/stages/`; `load_stage` also accepts a path to a user's own YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.config import ConfigError, build, load_yaml, named_yaml

STAGES_DIR = Path(__file__).parent / "stages"


@dataclass(frozen=True)
class ModelConfig:
    """MMDiT shape. `mlp_ratio` is the SwiGLU hidden width over `hidden` (8/3 keeps params equal to a 4x GELU MLP)."""

    preset: str = "tiny"
    hidden: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 8 / 3
    rope_theta: float = 10_000.0
    qk_norm: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def validate(self) -> None:
        if self.hidden % self.heads:
            raise ConfigError(f"model.hidden ({self.hidden}) must be divisible by model.heads ({self.heads})")
        if self.head_dim % 8:
            raise ConfigError(f"model head_dim = hidden/heads = {self.head_dim} must be a multiple of 8 (MSRoPE axes)")
        if self.depth < 1:
            raise ConfigError("model.depth must be >= 1")


# Presets from CPU tests to ~1B parameters. Parameter counts (cond_dim 384, patch 2 on pixels) are printed by
# `python3 bench/train_throughput.py --list` and recorded in docs/trainer.md.
MODEL_PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(preset="tiny", hidden=64, depth=2, heads=4),
    "small": ModelConfig(preset="small", hidden=384, depth=8, heads=6),
    "base_300m": ModelConfig(preset="base_300m", hidden=1024, depth=10, heads=16),
    "large_1b": ModelConfig(preset="large_1b", hidden=1536, depth=14, heads=24),
}


def model_config(data: dict[str, Any] | str | None) -> ModelConfig:
    """A preset by name, or a mapping `{preset: NAME, <field>: override, ...}`."""
    if data is None:
        data = {}
    if isinstance(data, str):
        data = {"preset": data}
    preset = data.get("preset", "tiny")
    if preset not in MODEL_PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; known: {sorted(MODEL_PRESETS)}")
    merged = {**dataclasses.asdict(MODEL_PRESETS[preset]), **data}
    cfg = build(ModelConfig, merged, "model")
    cfg.validate()
    return cfg


CAPTION_MODES = ("auto", "curated", "captioned")
STAGE_KINDS = ("flow", "dpo")


@dataclass(frozen=True)
class DataConfig:
    """What the loader reads and how it mixes it (seed table: T2I/TI2I 0.9/0.1, uncond dropout 0.1)."""

    recipes: list[str] = field(default_factory=lambda: ["stage1_256p"])
    resolutions: list[int] = field(default_factory=lambda: [256])
    aspect_ratios: list[float] = field(default_factory=lambda: [1.0, 0.75, 4 / 3, 0.5625, 16 / 9])
    t2i_ratio: float = 0.9
    uncond_dropout: float = 0.1
    batch_size: int = 8
    num_workers: int = 0
    allow_missing_tasks: bool = False
    max_text_tokens: int = 64
    row_group_cache: int = 16
    # Which version of a recipe's rows to read: `auto` takes `captioned/<recipe>/` shard by shard where its
    # complete shard matches the curated one (fused caption when present, else the raw caption), and the
    # curated shard otherwise; `curated` ignores captions; `captioned` requires every shard captioned.
    captions: str = "auto"
    # Read the recipe's `mix:` sources (`selections/<recipe>/mix.json`, written by `flywheel select`) and draw
    # each at its weight; False trains on the curated (or captioned) rows alone.
    mix: bool = True
    # Preference stages (`kind: dpo`): the track of (chosen, rejected) pairs, a workspace folder.
    pairs: str = "tracks/rl"

    def validate(self) -> None:
        if not self.recipes:
            raise ConfigError("data.recipes must name at least one curated recipe")
        if self.captions not in CAPTION_MODES:
            raise ConfigError(f"data.captions must be one of {CAPTION_MODES}, got {self.captions!r}")
        if not 0.0 <= self.t2i_ratio <= 1.0:
            raise ConfigError(f"data.t2i_ratio must be in [0, 1], got {self.t2i_ratio}")
        if not 0.0 <= self.uncond_dropout < 1.0:
            raise ConfigError(f"data.uncond_dropout must be in [0, 1), got {self.uncond_dropout}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ConfigError("data.batch_size must be >= 1 and data.num_workers >= 0")
        if not self.resolutions or min(self.resolutions) < 16:
            raise ConfigError(f"data.resolutions must be a non-empty list of sizes >= 16, got {self.resolutions}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ConfigError(f"data.aspect_ratios must be positive, got {self.aspect_ratios}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.001
    grad_clip: float = 1.0


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, computed from the step (no scheduler object, so resume needs only the step)."""

    kind: str = "constant"  # constant | cosine | linear
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1

    def validate(self) -> None:
        if self.kind not in ("constant", "cosine", "linear"):
            raise ConfigError(f"schedule.kind must be constant, cosine or linear, got {self.kind!r}")


@dataclass(frozen=True)
class EncoderConfig:
    """Condition encoder: `minilm` (offline default) or `vlm` (a transformers image-text-to-text model folder)."""

    kind: str = "minilm"
    path: str | None = None
    layer: int = -1  # which hidden-state layer of the VLM to use

    def validate(self) -> None:
        if self.kind not in ("minilm", "vlm"):
            raise ConfigError(f"encoder.kind must be minilm or vlm, got {self.kind!r}")
        if self.kind == "vlm" and not self.path:
            raise ConfigError("encoder.kind: vlm needs encoder.path: a local folder saved with save_pretrained")


@dataclass(frozen=True)
class LatentConfig:
    """Latent space: pixel patches (default, no VAE needed) or a VAE from a local folder."""

    kind: str = "pixels"
    patch_size: int = 2
    vae_path: str | None = None
    scaling_factor: float | None = None  # None: read from the VAE's config
    shift_factor: float | None = None

    def validate(self) -> None:
        if self.kind not in ("pixels", "vae"):
            raise ConfigError(f"latents.kind must be pixels or vae, got {self.kind!r}")
        if self.kind == "vae" and not self.vae_path:
            raise ConfigError("latents.kind: vae needs latents.vae_path (a diffusers AutoencoderKL folder)")
        if self.patch_size < 1:
            raise ConfigError("latents.patch_size must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    grad_accum: int = 1
    ema_decay: float = 0.999
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    compile: bool = False
    checkpoint_every: int = 500
    log_every: int = 10
    eval_every: int = 500  # fixed-batch loss every N steps and at the end (0: never)
    seed: int = 0
    timestep_sampling: str = "logit_normal"  # logit_normal | uniform
    time_shift: float = 1.0
    device: str = "auto"  # auto | cpu | cuda
    # Start a new stage from another checkpoint's weights (a folder, a stage name = its latest step, or
    # STAGE/step-NNNNNNN). Used only when this stage has no checkpoint of its own to resume; the model,
    # latent and encoder sections are then taken from that checkpoint so the shapes always agree.
    init_from: str | None = None

    def validate(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train.precision must be fp32 or bf16, got {self.precision!r}")
        if self.timestep_sampling not in ("logit_normal", "uniform"):
            raise ConfigError(
                f"train.timestep_sampling must be logit_normal or uniform, got {self.timestep_sampling!r}"
            )
        if self.steps < 1 or self.grad_accum < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("train.steps, grad_accum, checkpoint_every and log_every must be >= 1")
        if self.eval_every < 0:
            raise ConfigError(f"train.eval_every must be >= 0 (0 turns evaluation off), got {self.eval_every}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")


@dataclass(frozen=True)
class DPOConfig:
    """Diffusion-DPO on flow matching (Wallace et al. 2023, with velocity MSE in place of noise MSE).

    `beta` scales the implicit reward; with per-sample MSE averaged over latent elements the useful range is
    large (the paper used 2000-5000 for SD latents). `sft_weight` adds the chosen image's plain flow loss,
    which keeps the policy from drifting off the data manifold on tiny pair sets.
    """

    beta: float = 1000.0
    sft_weight: float = 0.0

    def validate(self) -> None:
        if self.beta <= 0:
            raise ConfigError(f"dpo.beta must be > 0, got {self.beta}")
        if self.sft_weight < 0:
            raise ConfigError(f"dpo.sft_weight must be >= 0, got {self.sft_weight}")


@dataclass(frozen=True)
class StageConfig:
    name: str
    description: str = ""
    # The objective, chosen by stage type: `flow` (rectified-flow matching on curated/mixed rows) or `dpo`
    # (preference pairs from `data.pairs` against a frozen reference copy of `train.init_from`).
    kind: str = "flow"
    dpo: DPOConfig = field(default_factory=DPOConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    latents: LatentConfig = field(default_factory=LatentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "stage") -> StageConfig:
        data = dict(data)
        model = model_config(data.pop("model", None))
        if "name" not in data:
            raise ConfigError(f"{where}: a stage needs a `name`")
        cfg = build(cls, data, where)
        cfg = dataclasses.replace(cfg, model=model)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for part in (self.model, self.data, self.schedule, self.encoder, self.latents, self.train, self.dpo):
            part.validate()
        if self.kind not in STAGE_KINDS:
            raise ConfigError(f"kind must be one of {STAGE_KINDS}, got {self.kind!r}")
        if len(self.optim.betas) != 2:
            raise ConfigError("optim.betas must be two numbers")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> StageConfig:
        """A copy with whole sections or fields replaced: `cfg.replace(train={"steps": 10})`."""
        out = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
        return StageConfig.from_dict(out)


def load_stage(name_or_path: str | Path) -> StageConfig:
    """A built-in stage by name (`stage1_tiny_cpu`) or a stage YAML path."""
    path = named_yaml(name_or_path, STAGES_DIR, "stage")
    return StageConfig.from_dict(load_yaml(path), where=str(path))
