"""Typed configuration of the retrieval engine (strict keys, see flywheel.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.config import ConfigError, build, load_yaml

if TYPE_CHECKING:
    from flywheel.workspace import Workspace

ANN_TYPES = ("IVF_PQ", "IVF_HNSW_SQ", "IVF_HNSW_PQ", "IVF_FLAT")


@dataclass
class AnnConfig:
    """When and how the approximate index is built; below `min_rows` search is exact (a flat scan is fast)."""

    min_rows: int = 50_000
    index_type: str = "IVF_PQ"
    # Defaults measured at 1M x 384-d (docs/flywheel-loop.md): 256 partitions, nprobes 16, refine 50 gave
    # recall@10 0.97; refine 10 gave 0.63 (PQ codes alone mis-order near neighbours inside a dense cluster).
    num_partitions: int | None = None  # default: min(256, sqrt(rows)) - k-means cost grows with partitions^2
    num_sub_vectors: int | None = None  # default: dim / 8 (IVF_PQ)
    nprobes: int = 16
    refine_factor: int = 50  # re-rank k * refine_factor candidates with full vectors

    def check(self) -> None:
        if self.index_type not in ANN_TYPES:
            raise ConfigError(f"index.ann.index_type {self.index_type!r} unknown; use one of {ANN_TYPES}")
        if self.min_rows < 256:
            raise ConfigError("index.ann.min_rows must be >= 256 (an IVF index needs rows to train on)")
        if self.nprobes < 1 or self.refine_factor < 1:
            raise ConfigError("index.ann.nprobes and refine_factor must be >= 1")


@dataclass
class IndexConfig:
    """`flywheel index` settings. `clip_checkpoint` (or FLYWHEEL_CLIP_CHECKPOINT) adds CLIP-tower tables."""

    batch_size: int = 32
    image_size: int = 224
    text_max_length: int = 64
    clip_model: str = "ViT-B-32"
    clip_checkpoint: str | None = None
    clip_model_config: str | None = None
    ann: AnnConfig = field(default_factory=AnnConfig)

    @classmethod
    def load(cls, path: str | Path | None = None) -> IndexConfig:
        cfg = build(cls, load_yaml(path) if path else {}, "index")
        cfg.check()
        return cfg

    @classmethod
    def for_workspace(cls, ws: Workspace) -> IndexConfig:
        """The config the workspace's index was last built with (stored beside it by `flywheel index`), so
        search, route and tracks embed queries the way the index was embedded; defaults when none is stored."""
        path = ws.index_config_path
        return cls.load(path if path.is_file() else None)

    def store(self, ws: Workspace) -> Path:
        """Write this config (every key, defaults included) beside the index, atomically."""
        import dataclasses

        import yaml

        from flywheel.store.shards import write_bytes_atomic

        path = ws.index_config_path
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "# written by `flywheel index`: the config this index was built with\n"
        text += yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)
        write_bytes_atomic(path, text.encode("utf-8"))
        return path

    def check(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("index.batch_size must be >= 1")
        self.ann.check()
