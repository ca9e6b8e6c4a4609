"""trainer: flow-matching MMDiT on curated shards, sampling, and evaluation into bad cases (docs/trainer.md)."""
