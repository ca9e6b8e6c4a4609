"""dashboards: planned (see ../shared/ARCHITECTURE.md); reads and writes the curated shards of flywheel."""
