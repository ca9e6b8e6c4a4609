"""Scorers, one module per filter family; `filters.registry` declares them all in one place."""
