"""Stage-1 filter precision/recall on the hard labeled corpus (corpus/hard.py), tune and report splits.

Scores every file the way `flywheel score` does (one decode at the fixed scoring view, then the CPU
scorers), applies the stage-1 recipe's low-information and duplicate rules as `flywheel select` would
(low-information rows are removed before duplicate grouping; duplicates grouped with the same banded join,
keeping the member with most pixels), and reports per category. Thresholds are read from the recipe; the
`tune` split is where they were chosen, `report` is built from other source photos and seeds.

    python3 bench/hard_quality.py --splits tune,report [--out docs/hard_quality.md]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from corpus.hard import HardSample, build_split
from filters.base import SampleBatch
from filters.config import ScoringConfig
from filters.dedup import DedupScorer
from filters.entropy import EntropyScorer
from filters.registry import decode_short_side
from flywheel.imaging import decode
from flywheel.recipes import load_recipe
from flywheel.select.dedup_groups import groups_from_edges, multiview_edges, near_duplicate_edges


def score_rows(samples: list[HardSample]) -> list[dict[str, Any]]:
    """Score columns of every sample, computed exactly as the CPU stage of `flywheel score` does."""
    cfg = ScoringConfig()
    view = decode_short_side(cfg)
    scorers = [DedupScorer(), EntropyScorer()]
    decoded = [decode(s.data, view) for s in samples]
    batch = SampleBatch(
        ids=[s.name for s in samples],
        images=[s.data for s in samples],
        captions=[None] * len(samples),
        decoded=decoded,
    )
    rows: list[dict[str, Any]] = [
        {"name": s.name, "megapixels": (d.width or 0) * (d.height or 0) / 1e6}
        for s, d in zip(samples, decoded, strict=True)
    ]
    for scorer in scorers:
        for column, values in scorer(batch).items():
            for row, v in zip(rows, values, strict=True):
                row[column] = v
    return rows


def _pr(tp: int, fp: int, fn: int) -> tuple[str, str]:
    p = f"{tp / (tp + fp):.3f}" if tp + fp else "n/a"
    r = f"{tp / (tp + fn):.3f}" if tp + fn else "n/a"
    return p, r


def low_info_table(samples: list[HardSample], rows: list[dict[str, Any]], threshold: float) -> list[str]:
    flagged = {r["name"]: (r["entropy_detail"] is not None and r["entropy_detail"] < threshold) for r in rows}
    out = ["| low information | precision | recall | TP | FP | FN | n |", "|---|---|---|---|---|---|---|"]
    positives = [s for s in samples if s.low_info]
    tp = sum(flagged[s.name] for s in positives)
    fp = sum(flagged[s.name] for s in samples if not s.low_info)
    p, r = _pr(tp, fp, len(positives) - tp)
    out.append(
        f"| all (solid, gradient, faint noise) | {p} | {r} | {tp} | {fp} | {len(positives) - tp} | {len(samples)} |"
    )
    for kind in ("solid", "gradient", "noise"):
        pos = [s for s in samples if s.low_info == kind]
        tp_k = sum(flagged[s.name] for s in pos)
        out.append(f"| {kind}: recall | | {tp_k / len(pos):.3f} | {tp_k} | | {len(pos) - tp_k} | {len(pos)} |")
    for cat in ("photo", "scene", "document", "text"):
        neg = [s for s in samples if s.category == cat]
        fp_c = sum(flagged[s.name] for s in neg)
        out.append(f"| {cat}: wrongly flagged | | | | {fp_c} | | {len(neg)} |")
    return out


def dedup_removals(
    rows: list[dict[str, Any]], max_hamming: int, low_info_min: float, views: list[str] | None
) -> dict[str, str]:
    """name -> name of the kept member, for every row the recipe's near-dup rule would remove."""
    alive = [r for r in rows if r["dedup_phash"] is not None and (r["entropy_detail"] or 0) >= low_info_min]
    con = duckdb.connect()
    cols = ["dedup_phash", *(views or [])]
    table = pa.table(
        {"k": [r["name"] for r in alive], **{c: pa.array([r[c] for r in alive], pa.int64()) for c in cols}}
    )
    con.register("live", table)
    if views:
        edges = multiview_edges(con, "live", "k", cols, max_hamming)
    else:
        edges = near_duplicate_edges(con, "live", "k", "dedup_phash", max_hamming)
    groups = groups_from_edges(edges)
    members: dict[str, list[str]] = defaultdict(list)
    for k, g in groups.items():
        members[g].append(k)
    mp = {r["name"]: r["megapixels"] for r in rows}
    removed = {}
    for names in members.values():
        best = max(sorted(names), key=lambda n: mp[n])
        removed.update({n: best for n in names if n != best})
    return removed


def dedup_table(samples: list[HardSample], removed: dict[str, str]) -> list[str]:
    """Removal precision/recall (keep one per true group), per category of the removed file."""
    by_name = {s.name: s for s in samples}
    out = ["| duplicate removal | precision | recall | TP | FP | FN |", "|---|---|---|---|---|---|"]
    sizes: dict[str, int] = defaultdict(int)
    for s in samples:
        if s.group:
            sizes[s.group] += 1
    for cat in ("all", "photo", "scene", "document"):

        def wanted(s: HardSample, cat: str = cat) -> bool:
            return cat == "all" or s.category == cat

        truth = sum(n - 1 for g, n in sizes.items() if wanted(by_name[g]))
        tp = sum(
            1
            for n, keep in removed.items()
            if wanted(by_name[n]) and by_name[n].group and by_name[n].group == by_name[keep].group
        )
        fp = sum(1 for n in removed if wanted(by_name[n])) - tp
        p, r = _pr(tp, fp, truth - tp)
        out.append(f"| {cat} | {p} | {r} | {tp} | {fp} | {truth - tp} |")
    false_pairs: dict[str, int] = defaultdict(int)
    for n, keep in removed.items():
        if not (by_name[n].group and by_name[n].group == by_name[keep].group):
            false_pairs[f"{by_name[n].category}~{by_name[keep].category}"] += 1
    if false_pairs:
        out.append("")
        out.append(
            "false removals by (removed ~ kept) category: "
            + ", ".join(f"{k} {v}" for k, v in sorted(false_pairs.items()))
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", default="tune,report")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sweep", default="", help="comma-separated max_hamming values to tabulate (tuning)")
    args = parser.parse_args(argv)
    recipe = {r.name: r for r in load_recipe("stage1_256p").rules}
    low_min = float(recipe["low_info"].min)
    hamming = int(recipe["near_dup"].max_hamming)
    lines = [f"machine: {platform.machine()}, Python {platform.python_version()}; thresholds from stage1_256p", ""]
    for split in args.splits.split(","):
        started = time.perf_counter()
        samples = build_split(split, args.scale)
        rows = score_rows(samples)
        views = recipe["near_dup"].views
        removed = dedup_removals(rows, hamming, low_min, views)
        lines += [f"### split {split} ({len(samples)} files, {time.perf_counter() - started:.0f}s)", ""]
        lines += [*low_info_table(samples, rows, low_min), ""]
        lines += [*dedup_table(samples, removed), ""]
        for t in [int(v) for v in args.sweep.split(",") if v]:
            lines += [
                f"sweep max_hamming={t}:",
                *dedup_table(samples, dedup_removals(rows, t, low_min, views))[2:3],
                "",
            ]
    lines.append(f"command: `python3 bench/hard_quality.py --splits {args.splits} --scale {args.scale}`")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
