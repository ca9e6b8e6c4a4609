"""Precomputed aggregates of the pool and the curated selections, in one DuckDB file per pool state.

The data views must answer in well under 150 ms on a 1M-row pool, which a scan of thousands of Parquet
shards cannot. So the small columns (id, partition, caption, category, numeric scores) and every recipe's
rejected rows (joined with the scores the gallery shows) are copied once into
WORKSPACE/dashboards/cache/views-<fingerprint>.duckdb, and the histograms and category counts are computed
at the same time into a JSON beside it. The fingerprint covers the pool manifest and each selection's
funnel, so a new `flywheel score` or `flywheel select` builds a fresh cache (older ones are removed);
requests read through per-thread cursors of one read-only connection.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb

from flywheel.store.shards import write_json_atomic
from flywheel.workspace import Workspace

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL", "HUGEINT", "UBIGINT")
# Numeric pool columns that are not measurements (identifiers, hashes), so no histogram is drawn for them.
NOT_SCORES = frozenset({"partition", "dedup_phash"})
HIST_BINS = 40
CACHE_VERSION = 3  # bump when the cache's tables change, so an old cache file is rebuilt
CHECK_EVERY_S = 5.0


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ViewCache:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.dir = ws.dashboards_dir / "cache"
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._fp: str | None = None
        self._checked = 0.0
        self._local = threading.local()
        self.aggregates: dict[str, Any] = {}

    # --- state --------------------------------------------------------------------------------------------
    def fingerprint(self) -> str | None:
        """Hash of the pool manifest and every selection's funnel (None when there is no pool)."""
        parts = [f"v{CACHE_VERSION}"]
        manifest = self.ws.pool_dir / "_manifest.json"
        if manifest.is_file():
            st = manifest.stat()
            parts.append(f"m:{st.st_mtime_ns}:{st.st_size}")
        else:
            shards = self.ws.pool.shard_paths()
            if not shards:
                return None
            parts += [f"{p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in shards]
        for recipe in self.ws.curated_recipes():
            st = self.ws.funnel_path(recipe).stat()
            parts.append(f"{recipe}:{st.st_mtime_ns}")
        return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()

    def cursor(self) -> duckdb.DuckDBPyConnection | None:
        """A cursor on the current cache (built first if the pool or a selection changed); None without pool."""
        now = time.monotonic()
        if self._con is None or now - self._checked > CHECK_EVERY_S:
            with self._lock:
                if self._con is None or now - self._checked > CHECK_EVERY_S:
                    fp = self.fingerprint()
                    self._checked = now
                    if fp is None:
                        return None
                    if fp != self._fp:
                        self._open(fp)
        local = self._local
        if getattr(local, "fp", None) != self._fp:
            assert self._con is not None
            local.cur, local.fp = self._con.cursor(), self._fp
        return local.cur

    def _open(self, fp: str) -> None:
        path = self.dir / f"views-{fp}.duckdb"
        agg_path = self.dir / f"views-{fp}.json"
        if not (path.is_file() and agg_path.is_file()):
            self.build(path, agg_path)
        if self._con is not None:
            self._con.close()
        self._con = duckdb.connect(str(path), read_only=True)
        self.aggregates = json.loads(agg_path.read_text())
        self._fp = fp
        for old in self.dir.glob("views-*"):
            if fp not in old.name:
                old.unlink(missing_ok=True)

    # --- build --------------------------------------------------------------------------------------------
    def build(self, path: Path, agg_path: Path) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        files = [str(p) for p in self.ws.require_pool()]
        con = duckdb.connect(str(tmp))
        try:
            described = con.execute("DESCRIBE SELECT * FROM read_parquet(?, union_by_name=true)", [files]).fetchall()
            types = {r[0]: str(r[1]) for r in described}
            scores = [c for c, t in types.items() if t.split("(")[0] in NUMERIC and c not in NOT_SCORES]
            text = [c for c in ("uri", "caption", "task", "category", "broken_reason", "caption_issue") if c in types]
            cols = ", ".join(_quote(c) for c in ["id", "partition", *text, *scores])
            con.execute(
                f"CREATE TABLE pool AS SELECT {cols} FROM read_parquet(?, union_by_name=true) ORDER BY id", [files]
            )
            con.execute("CREATE TABLE rejected (recipe VARCHAR, uri VARCHAR, reason VARCHAR, reasons VARCHAR[])")
            con.execute("CREATE TABLE kept (recipe VARCHAR, uri VARCHAR)")
            for recipe in self.ws.curated_recipes():
                rejected = self.ws.rejected_path(recipe)
                if rejected.is_file():
                    con.execute(
                        "INSERT INTO rejected SELECT ?, uri, reason, reasons FROM read_parquet(?)",
                        [recipe, str(rejected)],
                    )
                kept = [str(p) for p in self.ws.curated_store(recipe).shard_paths()]
                if kept:
                    con.execute("INSERT INTO kept SELECT ?, uri FROM read_parquet(?)", [recipe, kept])
            # `rn` numbers the rows in gallery order; a page is then a range of rn, which DuckDB's zone maps
            # find without scanning (a LIMIT/OFFSET over a string filter would scan every earlier row).
            con.execute("""CREATE TABLE gallery AS
                SELECT row_number() OVER (ORDER BY r.recipe, r.reason, p.partition, p.uri) - 1 AS rn,
                       r.recipe, r.reason, r.reasons, p.*
                FROM rejected r JOIN pool p USING (uri) ORDER BY rn""")
            # The sample page looks up why one id was rejected: sorted by id, DuckDB's zone maps skip to it.
            con.execute("CREATE TABLE why AS SELECT id, recipe, reasons FROM gallery ORDER BY id, recipe")
            aggregates = {
                "rows": con.execute("SELECT count(*) FROM pool").fetchone()[0],
                "scores": scores,
                "histograms": self._histograms(con, scores),
                "categories": self._categories(con) if "category" in types else {},
                "gallery": {
                    f"{rec}/{reason}": [int(start), int(n)]
                    for rec, reason, start, n in con.execute(
                        "SELECT recipe, reason, min(rn), count(*) FROM gallery GROUP BY 1, 2"
                    ).fetchall()
                },
                "reasons": {
                    rec: dict(
                        con.execute(
                            "SELECT reason, count(*) FROM rejected WHERE recipe = ? GROUP BY 1", [rec]
                        ).fetchall()
                    )
                    for rec in self.ws.curated_recipes()
                },
            }
        finally:
            con.close()
        tmp.replace(path)
        write_json_atomic(agg_path, aggregates)

    @staticmethod
    def _histograms(con: duckdb.DuckDBPyConnection, scores: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for col in scores:
            q = _quote(col)
            lo, hi, nulls = con.execute(f"SELECT min({q}), max({q}), count(*) - count({q}) FROM pool").fetchone()
            if lo is None:
                out[col] = {"lo": None, "hi": None, "counts": [], "nulls": nulls}
                continue
            lo, hi = float(lo), float(hi)
            width = (hi - lo) / HIST_BINS if hi > lo else 1.0
            rows = con.execute(
                f"""SELECT least({HIST_BINS - 1}, floor(({q} - ?) / ?)::INTEGER) AS b, count(*) FROM pool
                    WHERE {q} IS NOT NULL AND NOT isnan({q}::DOUBLE) GROUP BY 1""",
                [lo, width],
            ).fetchall()
            counts = [0] * HIST_BINS
            for b, n in rows:
                counts[int(b)] += int(n)
            out[col] = {"lo": lo, "hi": hi if hi > lo else lo + 1.0, "counts": counts, "nulls": int(nulls)}
        return out

    def _categories(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for recipe in self.ws.curated_recipes():
            rows = con.execute(
                """SELECT coalesce(p.category, '(none)') AS c,
                          count(*) FILTER (WHERE k.uri IS NOT NULL) AS kept,
                          count(*) FILTER (WHERE k.uri IS NULL) AS rejected
                   FROM pool p LEFT JOIN (SELECT uri FROM kept WHERE recipe = ?) k USING (uri)
                   GROUP BY 1 ORDER BY 2 + 3 DESC""",
                [recipe],
            ).fetchall()
            out[recipe] = [{"category": c, "kept": int(k), "rejected": int(r)} for c, k, r in rows]
        return out

    # --- lookups ------------------------------------------------------------------------------------------
    def partition_of(self, sample_id: str) -> int | None:
        cur = self.cursor()
        if cur is None:
            return None
        row = cur.execute("SELECT partition FROM pool WHERE id = ? LIMIT 1", [sample_id]).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def sample(self, sample_id: str) -> dict[str, Any] | None:
        cur = self.cursor()
        if cur is None:
            return None
        got = cur.execute("SELECT * FROM pool WHERE id = ? LIMIT 1", [sample_id])
        row = got.fetchone()
        if row is None:
            return None
        names = [d[0] for d in got.description]
        return {n: (None if isinstance(v, float) and math.isnan(v) else v) for n, v in zip(names, row, strict=True)}
