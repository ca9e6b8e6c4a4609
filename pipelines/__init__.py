"""Entry points that compose the parts: Ray Data pipelines, Prefect flows and the `flywheel` CLI."""
