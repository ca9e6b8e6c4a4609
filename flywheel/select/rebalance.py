"""Taxonomy balance of a selection: per-node caps and temperature resampling, best rows kept in each node.

Why in SQL over the selection table: a node's best rows depend on which rows the recipe's rules left alive, so
the ranking runs after them, on the live rows only, like `top` rules and dedup. Why a seeded hash as the last
sort key: rows that tie on the quality column (or a recipe without one) need an order that does not depend on
how the pool happens to be sharded, and that a user can vary on purpose (`seed:`) without editing data.

The temperature targets are the one piece of arithmetic outside SQL (`temperature_targets`): with counts c_n
per node the weights are c_n^(1/T); the total is handed out in proportion to the weights, a node that would
get more than it holds keeps all its rows and the rest is handed out again among the others (water filling),
and the last fractions go to the largest remainders, so the targets sum exactly to the total.
"""

from __future__ import annotations

import duckdb

from flywheel.recipes.sections import TaxonomyBalance

KEY = "id"
NODE = "_tax_node"
RANK = "_tax_rank"
TOP_NODE = "_tax_top"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def node_sql(column: str, level: int) -> str:
    """SQL of a row's node: the first `level` parts of the `/`-separated path; NULL for a null or empty path."""
    col = _quote(column)
    return f"NULLIF(array_to_string(list_slice(string_split({col}, '/'), 1, {int(level)}), '/'), '')"


def add_top_node(con: duckdb.DuckDBPyConnection, column: str) -> None:
    """Write every row's top taxonomy node (level 1) for the funnel's per-node counts."""
    con.execute(f"ALTER TABLE s ADD COLUMN {TOP_NODE} VARCHAR")
    con.execute(f"UPDATE s SET {TOP_NODE} = {node_sql(column, 1)}")


def rank_in_nodes(con: duckdb.DuckDBPyConnection, tax: TaxonomyBalance, seed: int) -> None:
    """Write each live row's node and its rank inside the node (1 = best); other rows get NULL ranks."""
    con.execute(f"ALTER TABLE s ADD COLUMN IF NOT EXISTS {NODE} VARCHAR")
    con.execute(f"ALTER TABLE s ADD COLUMN IF NOT EXISTS {RANK} BIGINT")
    con.execute(f"UPDATE s SET {NODE} = {node_sql(tax.column, tax.level)}, {RANK} = NULL")
    order = [f"md5({int(seed)} || '/' || {KEY})", KEY]
    if tax.best_by:
        order.insert(0, f"{_quote(tax.best_by)} {'ASC' if tax.ascending else 'DESC'} NULLS LAST")
    con.execute(f"""UPDATE s SET {RANK} = r.rn FROM (
            SELECT {KEY} AS k, row_number() OVER (PARTITION BY {NODE} ORDER BY {", ".join(order)}) AS rn
            FROM s WHERE alive AND {NODE} IS NOT NULL) r
        WHERE s.{KEY} = r.k""")


def cap_keep(con: duckdb.DuckDBPyConnection, tax: TaxonomyBalance) -> str:
    """Keep condition of the per-node caps (`caps` by node name, else `cap`; no cap: the node is not cut)."""
    con.execute("CREATE OR REPLACE TEMP TABLE tax_caps (node VARCHAR, cap BIGINT)")
    if tax.caps:
        con.executemany("INSERT INTO tax_caps VALUES (?, ?)", list(tax.caps.items()))
    default = "NULL" if tax.cap is None else str(int(tax.cap))
    _flag(
        con,
        "_tax_cap_ok",
        f"""SELECT s.{KEY} AS k, s.{RANK} <= COALESCE(c.cap, {default}, s.{RANK}) AS ok
        FROM s LEFT JOIN tax_caps c ON c.node = s.{NODE} WHERE s.{RANK} IS NOT NULL""",
    )
    return "COALESCE(_tax_cap_ok, TRUE)"


def _flag(con: duckdb.DuckDBPyConnection, name: str, rows_sql: str) -> None:
    """A boolean column set from `rows_sql` (k, ok); rows it does not list stay NULL (not judged)."""
    con.execute(f"ALTER TABLE s ADD COLUMN {name} BOOLEAN DEFAULT NULL")
    con.execute(f"UPDATE s SET {name} = r.ok FROM ({rows_sql}) r WHERE s.{KEY} = r.k")


def resample_keep(con: duckdb.DuckDBPyConnection, tax: TaxonomyBalance, seed: int) -> tuple[str, dict[str, int]]:
    """Keep condition of the temperature resampling to `tax.total` rows, and the per-node targets it used."""
    assert tax.total is not None
    rank_in_nodes(con, tax, seed)  # ranks among the rows the caps left
    sql = f"SELECT {NODE}, count(*) FROM s WHERE alive AND {NODE} IS NOT NULL GROUP BY 1"
    counts = dict(con.execute(sql).fetchall())
    targets = temperature_targets({str(k): int(v) for k, v in counts.items()}, float(tax.temperature), int(tax.total))
    con.execute("CREATE OR REPLACE TEMP TABLE tax_targets (node VARCHAR, n BIGINT)")
    if targets:
        con.executemany("INSERT INTO tax_targets VALUES (?, ?)", list(targets.items()))
    _flag(
        con,
        "_tax_resample_ok",
        f"""SELECT s.{KEY} AS k, s.{RANK} <= t.n AS ok
        FROM s JOIN tax_targets t ON t.node = s.{NODE} WHERE s.{RANK} IS NOT NULL""",
    )
    return "COALESCE(_tax_resample_ok, TRUE)", targets


def temperature_targets(counts: dict[str, int], temperature: float, total: int) -> dict[str, int]:
    """Rows to keep per node: `total` in proportion to count^(1/temperature), never more than a node holds.

    Deterministic (ties of the largest-remainder step go to the node name), and the targets sum to
    min(total, sum of counts).
    """
    if total >= sum(counts.values()):
        return dict(counts)
    targets: dict[str, int] = {}
    left = {n: c for n, c in counts.items() if c > 0}
    budget = float(total)
    ideal: dict[str, float] = {}
    while left:
        weights = {n: c ** (1.0 / temperature) for n, c in left.items()}
        scale = budget / sum(weights.values())
        ideal = {n: w * scale for n, w in weights.items()}
        full = [n for n in left if left[n] <= ideal[n]]
        if not full:
            break
        for n in full:
            targets[n] = left.pop(n)
            budget -= targets[n]
    floors = {n: int(ideal[n] + 1e-9) for n in left}
    spare = round(budget) - sum(floors.values())
    for n in sorted(left, key=lambda n: (-(ideal[n] - floors[n]), n))[: max(spare, 0)]:
        floors[n] += 1
    targets.update(floors)
    return {n: targets.get(n, 0) for n in counts}


def describe(tax: TaxonomyBalance) -> tuple[str, str]:
    """The funnel conditions of the cap and the resampling steps."""
    order = "lowest" if tax.ascending else "highest"
    ranked = f"best by {tax.best_by} ({order} first)" if tax.best_by else "seeded order"
    named = ", ".join(f"{k} {v}" for k, v in tax.caps.items())
    limit = f"{tax.cap}" if not named else f"{named}" + (f", others {tax.cap}" if tax.cap else "")
    cap = f"at most {limit} rows per {tax.column} node of level {tax.level}, {ranked}"
    shape = f"targets ~ count^(1/{tax.temperature:g})"
    resample = f"{tax.total} rows over {tax.column} level-{tax.level} nodes, {shape}, {ranked}"
    return cap, resample
