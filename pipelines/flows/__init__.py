"""Prefect flows that data engineers run (locally without a server, or against one unchanged)."""
