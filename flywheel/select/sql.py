"""SQL pieces of a selection: quoting names and values, and the keep expression of a threshold rule.

Shared by the engine, the mix sources and the pretrain track's quality check, so a rule means the same
SQL wherever it is applied.
"""

from __future__ import annotations

from typing import Any

from flywheel.recipes.recipe import Rule

KEY = "id"  # unique per sample since schema v2 (the engine checks it)


def quote(name: str) -> str:
    """A DuckDB identifier, quoted (column names come from pools and recipes)."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A DuckDB literal for a threshold from a recipe (text quoted, booleans as TRUE/FALSE)."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(value)


def keep_expression(rule: Rule) -> str:
    """SQL that is TRUE when the row passes a threshold rule (NULL column -> rule.on_null)."""
    col = quote(rule.column) if rule.column else None
    parts = []
    if rule.min is not None:
        parts.append(f"{col} >= {literal(rule.min)}")
    if rule.max is not None:
        parts.append(f"{col} <= {literal(rule.max)}")
    if rule.values_in is not None:
        parts.append(f"{col} IN ({', '.join(literal(v) for v in rule.values_in)})")
    if rule.not_in is not None:
        parts.append(f"{col} NOT IN ({', '.join(literal(v) for v in rule.not_in)})")
    if rule.keep:
        parts.append(f"({rule.keep})")
    if rule.is_null is not None:
        null_test = f"{col} IS NULL" if rule.is_null else f"{col} IS NOT NULL"
        return " AND ".join([null_test, *parts]) if parts else null_test
    expr = " AND ".join(parts) or "TRUE"
    if col is None:
        return f"COALESCE({expr}, {'TRUE' if rule.on_null == 'keep' else 'FALSE'})"
    return f"CASE WHEN {col} IS NULL THEN {'TRUE' if rule.on_null == 'keep' else 'FALSE'} ELSE ({expr}) END"
