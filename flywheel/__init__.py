"""Flywheel core: sample schema, shard store, recipes and selection. Knows no filter, captioner or trainer."""

__version__ = "0.1.0"
