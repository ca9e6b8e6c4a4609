"""Typed configuration of the retrieval engine (strict keys, see flywheel.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.config import ConfigError, build, load_yaml

if TYPE_CHECKING:
    from flywheel.workspace import Workspace

ANN_TYPES = ("IVF_PQ", "IVF_HNSW_SQ", "IVF_HNSW_PQ", "IVF_FLAT")
SERVING = ("faiss", "lance")
FAISS_TYPES = ("IVF_FLAT", "IVF_SQ8")


@dataclass
class FaissConfig:
    """The faiss IVF index that answers single queries of a large table when `ann.serving` is `faiss`.

    LanceDB's IVF_PQ path measured p50 19 ms at 1M x 384-d on 2 cores, because recall needs a re-rank of
    k * refine_factor full vectors read from the table; an IVF_FLAT index scans full vectors of `nprobe`
    lists in memory (memory-mapped, so opening it costs nothing) and needs no re-rank. Figures:
    docs/retrieval.md. IVF_SQ8 stores one byte per dimension (a quarter of the memory) at some recall.
    """

    index_type: str = "IVF_FLAT"
    nlist: int | None = None  # default: sqrt(rows) clamped to [16, 4096], about 1000 vectors per list at 1M
    nprobe: int = 24  # lists scanned per query; tuned in docs/retrieval.md (recall@10 0.995 at 1M, 16: 0.966)
    # A filtered query takes the k * filter_oversample nearest rows from faiss and applies `where` to them;
    # when fewer than k pass (a selective filter), it is answered by LanceDB's prefiltered search instead.
    filter_oversample: int = 20
    # Memory-map the index (opens in no time, the page cache is shared by every process: `flywheel search`
    # is one query per process) or read it into RAM (about 0.4 s per GB, then searches about twice as fast:
    # for a long-running process that asks thousands of queries). docs/retrieval.md has both.
    mmap: bool = True
    # Rows written after the copy was built are folded into its trained IVF lists (no k-means, seconds
    # instead of a full rebuild); once the rows folded since the last training pass this fraction of the
    # rows it was trained on, the next `flywheel index` retrains (the lists drift from the data, and
    # sqrt(rows) lists no longer fit the table). Figures: docs/retrieval.md.
    retrain_after: float = 0.5

    def check(self) -> None:
        if self.index_type not in FAISS_TYPES:
            raise ConfigError(f"index.ann.faiss.index_type {self.index_type!r} unknown; use one of {FAISS_TYPES}")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError("index.ann.faiss.nlist must be >= 1")
        if self.nprobe < 1 or self.filter_oversample < 1:
            raise ConfigError("index.ann.faiss.nprobe and filter_oversample must be >= 1")
        if not self.retrain_after >= 0:
            raise ConfigError("index.ann.faiss.retrain_after must be >= 0 (0: retrain after every write)")


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
    # Which index answers unfiltered (and most filtered) queries of a table past `min_rows`: `faiss` builds a
    # faiss IVF index beside the LanceDB one (which stays, for selective filters); `lance` uses LanceDB only.
    serving: str = "faiss"
    faiss: FaissConfig = field(default_factory=FaissConfig)

    def check(self) -> None:
        if self.serving not in SERVING:
            raise ConfigError(f"index.ann.serving {self.serving!r} unknown; use one of {SERVING}")
        self.faiss.check()
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
