"""Shard storage: atomic Parquet shards with markers and a manifest."""

from flywheel.store.shards import ShardInfo, ShardStore, StaleShardError, shard_name, write_json_atomic

__all__ = ["ShardInfo", "ShardStore", "StaleShardError", "shard_name", "write_json_atomic"]
