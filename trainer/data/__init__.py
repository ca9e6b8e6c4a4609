"""Curated-shard data loading: row index, buckets, deterministic batch plan."""
