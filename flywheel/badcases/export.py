"""Export the store to Parquet: one row per case, evidence and decisions as JSON text (stable, diffable)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.badcases.store import BadCaseStore


def export_parquet(store: BadCaseStore, out: Path) -> int:
    decisions: dict[str, list[dict[str, object]]] = {}
    for d in store.decisions():
        decisions.setdefault(d["case_id"], []).append(d)
    rows = []
    for case in store.list(kind=None):
        row = dict(case)
        for key in ("metrics", "failure_tags", "evidence"):
            row[key] = json.dumps(row[key], sort_keys=True, ensure_ascii=False) if row[key] is not None else None
        row["decisions"] = json.dumps(decisions.get(case["case_id"], []), ensure_ascii=False)
        rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows) if rows else pa.table({"case_id": pa.array([], pa.string())})
    pq.write_table(table, out)
    return len(rows)
