"""Retrieval engine over the pool: LanceDB tables per embedding space, faiss for bulk kNN and clustering."""

from flywheel.retrieval.config import AnnConfig, IndexConfig
from flywheel.retrieval.engine import IndexError_, RetrievalEngine, TableInfo
from flywheel.retrieval.space import EmbeddingSpace, ImageEmbedder, TextEmbedder

__all__ = [
    "AnnConfig",
    "EmbeddingSpace",
    "ImageEmbedder",
    "IndexConfig",
    "IndexError_",
    "RetrievalEngine",
    "TableInfo",
    "TextEmbedder",
]
