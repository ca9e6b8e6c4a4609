"""Per-type summary of a captioned selection (DuckDB over the shards): produced, repaired, failed, flags.

Computed from the written shards rather than counted in flight, so a resumed run reports the
whole selection, not just the shards this run happened to write.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flywheel.store import fs as storage


def summarize(shards: Sequence[Path], kinds: Sequence[str]) -> dict[str, Any]:
    """{kind: {"rows", "ok", "repaired", "failed", "error", "not_produced", "flags": {flag: n}, "error_example"}}."""
    if not shards:
        return {}
    files = [str(p) for p in shards]
    con = storage.duckdb_connect(*files)
    summary: dict[str, Any] = {}
    for kind in kinds:
        status, checks, error = f"caption_{kind}_status", f"caption_{kind}_checks", f"caption_{kind}_error"
        rows = con.execute(f'SELECT "{status}", count(*) FROM read_parquet(?) GROUP BY 1', [files]).fetchall()
        entry: dict[str, Any] = {"rows": sum(n for _, n in rows)}
        entry.update({str(s): int(n) for s, n in rows})
        flags = con.execute(
            f'SELECT flag, count(*) FROM (SELECT unnest("{checks}") AS flag FROM read_parquet(?)) '
            "GROUP BY 1 ORDER BY 2 DESC",
            [files],
        ).fetchall()
        entry["flags"] = {str(f): int(n) for f, n in flags}
        example = con.execute(
            f'SELECT "{error}" FROM read_parquet(?) WHERE "{error}" IS NOT NULL LIMIT 1', [files]
        ).fetchone()
        entry["error_example"] = example[0] if example else None
        summary[kind] = entry
    split = con.execute("SELECT caption_split, count(*) FROM read_parquet(?) GROUP BY 1", [files]).fetchall()
    summary["caption_split"] = {str(s): int(n) for s, n in split}
    return summary
