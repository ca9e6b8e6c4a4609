"""Checking a recipe against the pool before anything is selected.

A recipe that means something else than written is worse than one that fails: a rule on a misspelt column
used to be "not applied" with exit 0, a string where a list belongs kept no row, and a `keep:` expression
was pasted into SQL, so `keep: "1); COPY ..."` ran any DuckDB statement. Here every rule is checked
against the pool's columns and Arrow types, and a `keep:` text must parse as one SQL expression over pool
columns (no statements, subqueries, table functions or comments). Selection then runs with DuckDB's file
access disabled and its configuration locked (flywheel.select.engine), so even an expression that slipped
through could not read or write a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import pyarrow as pa

from flywheel.config import ConfigError
from flywheel.recipes.recipe import Recipe, Rule
from flywheel.recipes.sections import Category


class RecipeError(ConfigError):
    """A recipe does not fit the pool it is applied to (unknown column, wrong type, invalid `keep`)."""


_ORDER_MODIFIERS = re.compile(r"^((ASC|DESC)( |$))?(NULLS (FIRST|LAST))?$", re.IGNORECASE)
# Node classes/types of DuckDB's parsed SQL that have no place in a row filter.
_FORBIDDEN_NODES = {"SUBQUERY": "a subquery", "TABLE_FUNCTION": "a table function", "WINDOW": "a window function"}


@dataclass
class CheckedRecipe:
    """The rules that apply, those that cannot (their filter was not run), and the columns they read."""

    applied: list[Rule] = field(default_factory=list)
    not_applied: list[dict[str, str]] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)  # rule name -> how it was adapted to this pool
    # categories whose `when` can run on this pool (the default included); the others match nothing
    categories: list[Category] = field(default_factory=list)
    category_warnings: list[str] = field(default_factory=list)


def keep_columns(expr: str, where: str) -> set[str]:
    """Columns a `keep:` expression reads; RecipeError unless it is one plain SQL expression.

    Checked twice: lexically (no `;`, comments, or a `)` that closes the surrounding `WHERE (...)`), then
    by DuckDB's own parser (one SELECT whose WHERE clause is the expression, with no subquery, table
    function or window in it).
    """
    _lexical_check(expr, where)
    con = duckdb.connect()
    try:
        raw = con.execute("SELECT json_serialize_sql(?)", [f"SELECT 1 FROM s WHERE ({expr})"]).fetchone()[0]
    finally:
        con.close()
    tree = json.loads(raw)
    if tree.get("error"):
        message = str(tree.get("error_message", "")).splitlines()[0]
        raise RecipeError(f"{where}: keep {expr!r} is not a valid SQL expression: {message}")
    statements = tree.get("statements", [])
    if len(statements) != 1 or statements[0].get("node", {}).get("type") != "SELECT_NODE":
        raise RecipeError(f"{where}: keep {expr!r} must be one SQL expression, not a statement")
    found: set[str] = set()
    problems: list[str] = []
    _walk(statements[0]["node"].get("where_clause"), found, problems)
    if problems:
        raise RecipeError(f"{where}: keep {expr!r} may not contain {problems[0]}; use a plain expression")
    return found


def _lexical_check(expr: str, where: str) -> None:
    depth, i, n = 0, 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch in ("'", '"'):  # skip a string literal or quoted identifier ('' / "" escape themselves)
            end = i + 1
            while end < n:
                if expr[end] == ch:
                    if end + 1 < n and expr[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            if end >= n:
                raise RecipeError(f"{where}: keep {expr!r} has an unterminated {ch}quote{ch}")
            i = end + 1
            continue
        if ch == ";":
            raise RecipeError(f"{where}: keep {expr!r} must be one SQL expression; ';' is not allowed")
        if expr.startswith("--", i) or expr.startswith("/*", i):
            raise RecipeError(f"{where}: keep {expr!r} may not contain SQL comments")
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise RecipeError(f"{where}: keep {expr!r} has an unbalanced ')'")
        i += 1
    if depth:
        raise RecipeError(f"{where}: keep {expr!r} has an unbalanced '('")
    if not expr.strip():
        raise RecipeError(f"{where}: keep is empty")


def _walk(node: Any, columns: set[str], problems: list[str]) -> None:
    if isinstance(node, dict):
        for key in ("class", "type"):
            if node.get(key) in _FORBIDDEN_NODES:
                problems.append(_FORBIDDEN_NODES[node[key]])
        if node.get("class") == "COLUMN_REF":
            columns.add(node["column_names"][-1])
        for value in node.values():
            _walk(value, columns, problems)
    elif isinstance(node, list):
        for value in node:
            _walk(value, columns, problems)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_name(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        return "number"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "text"
    if pa.types.is_boolean(dtype):
        return "boolean"
    return str(dtype)


def _check_values(rule: Rule, dtype: pa.DataType, where: str) -> None:
    kind = _type_name(dtype)
    for param in ("min", "max"):
        if getattr(rule, param) is not None and kind != "number":
            raise RecipeError(f"{where}: {param} needs a numeric column, but {rule.column} is {kind}")
    for param, values in (("in", rule.values_in), ("not_in", rule.not_in)):
        for value in values or []:
            ok = (
                (kind == "number" and _is_number(value))
                or (kind == "text" and isinstance(value, str))
                or (kind == "boolean" and isinstance(value, bool))
            )
            if not ok:
                raise RecipeError(f"{where}: {param} value {value!r} does not match column {rule.column} ({kind})")
    if rule.dedup == "perceptual" and not pa.types.is_integer(dtype):
        raise RecipeError(f"{where}: perceptual dedup needs an integer hash column, {rule.column} is {kind}")
    if rule.dedup == "semantic" and not (
        (pa.types.is_fixed_size_list(dtype) or pa.types.is_list(dtype)) and pa.types.is_floating(dtype.value_type)
    ):
        raise RecipeError(f"{where}: semantic dedup needs an embedding column (list of floats), not {kind}")


def check_recipe(recipe: Recipe, schema: pa.Schema, known_columns: Mapping[str, str] | None = None) -> CheckedRecipe:
    """Validate `recipe` against the pool `schema`; RecipeError on the first rule that does not fit.

    `known_columns` maps every column some registered filter can write to that filter. A rule on such a
    column that the pool lacks is "not applied" (its filter was not run, e.g. `score --filters ...`) and
    reported in the funnel; a rule on any other missing column is an error (a typo, or another pool).
    `None` (a pool built by hand, without the scoring run's record) judges every missing column as not run.
    """
    strict = known_columns is not None
    known: Mapping[str, str] = known_columns or {}
    pool = {f.name: f.type for f in schema}
    out = CheckedRecipe()
    for rule in recipe.rules:
        where = f"recipe {recipe.name}: rule {rule.name!r}"
        lacking_views = [c for c in rule.views or [] if c not in pool]
        if lacking_views and rule.column in pool:  # a pool scored before the centre-crop view hashes
            rule = replace(rule, views=None)
            out.notes[rule.name] = f"view hashes {lacking_views} not in the pool: full-view hashes only (re-score)"
        reads = set(rule.columns())
        if rule.keep:
            reads |= keep_columns(rule.keep, where)
        missing = sorted(reads - set(pool))
        if rule.dedup == "semantic" and rule.column in missing:
            raise RecipeError(
                f"{where}: the pool has no {rule.column} column; score it with the `embedding` filter "
                "(`flywheel score-missing --filters embedding`) before a semantic dedup"
            )
        if missing:
            unknown = [c for c in missing if strict and c not in known]
            if unknown:
                raise RecipeError(
                    f"{where} reads column(s) {unknown} that the pool lacks (and no registered filter writes); "
                    f"pool columns: {sorted(pool)}"
                )
            filters = sorted({known.get(c, "unrecorded") for c in missing})
            out.not_applied.append(
                {"rule": rule.name, "why": f"column(s) {missing} not in the pool: filter(s) {filters} were not run"}
            )
            continue
        if rule.column:
            _check_values(rule, pool[rule.column], where)
        if rule.best_by and _type_name(pool[rule.best_by]) != "number":
            kind = _type_name(pool[rule.best_by])
            raise RecipeError(f"{where}: best_by needs a numeric column, {rule.best_by} is {kind}")
        out.applied.append(rule)
        out.columns |= reads
    for category in recipe.categories:
        if category.when is None:
            out.categories.append(category)
            continue
        where = f"recipe {recipe.name}: category {category.name!r}"
        reads = keep_columns(category.when, where)
        missing = sorted(reads - set(pool))
        unknown = [c for c in missing if strict and c not in known]
        if unknown:
            raise RecipeError(
                f"{where} reads column(s) {unknown} that the pool lacks (and no registered filter writes)"
            )
        if missing:
            filters = sorted({known.get(c, "unrecorded") for c in missing})
            out.category_warnings.append(
                f"category {category.name!r} matched nothing: column(s) {missing} not in the pool "
                f"(filter(s) {filters} were not run)"
            )
            continue
        out.categories.append(category)
        out.columns |= reads
    for term in recipe.keep_best_by:
        words = term.split()
        column = words[0] if words else ""
        if strict and column not in pool and column not in known:
            raise RecipeError(f"recipe {recipe.name}: keep_best_by term {term!r} names no pool column")
        if not _ORDER_MODIFIERS.match(" ".join(words[1:])):
            raise RecipeError(
                f"recipe {recipe.name}: keep_best_by term {term!r} must be COLUMN [ASC|DESC] [NULLS FIRST|LAST]"
            )
    return out


def check_taxonomy(recipe: Recipe, schema: pa.Schema, known_columns: Mapping[str, str] | None = None) -> str | None:
    """Why the recipe's `taxonomy:` cannot apply to this pool (its filter was not run), or None when it can.

    A column no registered filter writes is a RecipeError, as for rules; so is a non-text taxonomy column or
    a non-numeric `best_by`.
    """
    tax = recipe.taxonomy
    if tax is None:
        return None
    where = f"recipe {recipe.name}: taxonomy"
    pool = {f.name: f.type for f in schema}
    missing = [c for c in tax.columns() if c not in pool]
    if missing:
        known: Mapping[str, str] = known_columns or {}
        unknown = [c for c in missing if known_columns is not None and c not in known]
        if unknown:
            raise RecipeError(f"{where} reads column(s) {unknown} that the pool lacks (and no filter writes)")
        filters = sorted({known.get(c, "unrecorded") for c in missing})
        return f"column(s) {missing} not in the pool: filter(s) {filters} were not run"
    kind = _type_name(pool[tax.column])
    if kind != "text":
        raise RecipeError(f"{where}: column {tax.column} must hold text paths like a/b, not {kind}")
    if tax.best_by and _type_name(pool[tax.best_by]) != "number":
        raise RecipeError(f"{where}: best_by needs a numeric column, {tax.best_by} is {_type_name(pool[tax.best_by])}")
    return None
