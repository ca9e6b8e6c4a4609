"""Precision and recall of each filter against the labeled corpus of `corpus.build`.

Each filter's decision is read from the pool exactly as a recipe would make it (the same
thresholds as `stage1_256p` unless given), and compared with the generator's labels.
Duplicate filters are judged on pairs: a predicted pair is correct when the generator made
one file from the other (exact copy or near copy, transitively).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flywheel.select.dedup_groups import groups_from_edges, hamming64


@dataclass
class Score:
    name: str
    tp: int
    fp: int
    fn: int
    support: int
    note: str = ""

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def _binary(
    name: str,
    rows: Iterable[tuple[dict[str, Any], dict[str, Any]]],
    truth: Callable[[dict[str, Any]], bool],
    pred: Callable[[dict[str, Any]], bool],
    note: str = "",
) -> Score:
    tp = fp = fn = support = 0
    for label, row in rows:
        t, p = truth(label), pred(row)
        support += t
        tp += t and p
        fp += (not t) and p
        fn += t and not p
    return Score(name, tp, fp, fn, support, note)


def _pairs(groups: dict[str, set[str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for members in groups.values():
        out |= {tuple(sorted(p)) for p in combinations(sorted(members), 2)}  # type: ignore[misc]
    return out


def _closure(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Transitive groups of the edges, by the same union-find selection uses."""
    groups: dict[str, set[str]] = {}
    for key, representative in groups_from_edges(list(edges)).items():
        groups.setdefault(representative, set()).add(key)
    return groups


def _pair_score(name: str, truth: set[tuple[str, str]], pred: set[tuple[str, str]], note: str = "") -> Score:
    return Score(name, len(truth & pred), len(pred - truth), len(truth - pred), len(truth), note)


def evaluate(
    pool_files: list[Path],
    labels_path: Path,
    images_dir: Path,
    *,
    upright_min: float = 0.08,
    net_upright_min: float = 0.056,  # stage1_256p rotation_net rule
    entropy_min: float = 0.2,
    nsfw_max: float = 0.7,
    max_hamming: int = 4,
) -> list[Score]:
    labels = {
        str((images_dir / rec["file"]).resolve()): rec
        for rec in map(json.loads, labels_path.read_text(encoding="utf-8").splitlines())
        if rec
    }
    table = pq.read_table(pool_files).drop_columns(["image", "source_image"])
    rows = {r["uri"]: r for r in table.to_pylist()}
    joined = [(labels[u], rows[u]) for u in rows if u in labels]
    cols = set(table.column_names)
    ok = [(lab, row) for lab, row in joined if not lab.get("broken")]
    scores = [
        _binary(
            "broken: any reason",
            joined,
            lambda lab: bool(lab.get("broken")),
            lambda r: r.get("broken_reason") is not None,
        )
    ]
    scores.append(_reason_score(joined))
    scores.append(
        _binary(
            "broken: mislabeled extension",
            ok,
            lambda lab: bool(lab.get("mislabeled")),
            lambda r: bool(r.get("broken_mislabeled")),
        )
    )
    if "resolution_min_side" in cols:
        scores.append(
            _binary(
                "resolution: tiny (min side < 64)",
                ok,
                lambda lab: bool(lab.get("tiny")),
                lambda r: (r["resolution_min_side"] or 0) < 64,
            )
        )
    uri_of = {lab["file"]: u for u, lab in labels.items()}
    if "dedup_sha256" in cols:
        truth_exact = _pairs(
            _closure(
                (uri_of[lab["exact_dup_of"]], u) for u, lab in labels.items() if lab.get("exact_dup_of") and u in rows
            )
        )
        by_sha: dict[str, set[str]] = {}
        for u, r in rows.items():
            if r.get("dedup_sha256") and r.get("broken_reason") is None:
                by_sha.setdefault(r["dedup_sha256"], set()).add(u)
        scores.append(_pair_score("dedup: exact pairs", truth_exact, _pairs(by_sha)))
    if "dedup_phash" in cols:
        edges = [
            (uri_of[lab[k]], u)
            for u, lab in labels.items()
            for k in ("exact_dup_of", "near_dup_of")
            if lab.get(k) and u in rows
        ]
        truth_near = _pairs(_closure(edges))
        # Flat images all hash alike; the recipe's entropy rule removes them before dedup runs.
        hashed = [
            (u, r["dedup_phash"])
            for u, r in rows.items()
            if r.get("dedup_phash") is not None and not labels.get(u, {}).get("blank")
        ]
        pred = {
            tuple(sorted((a, b))) for (a, ha), (b, hb) in combinations(hashed, 2) if hamming64(ha, hb) <= max_hamming
        }
        scores.append(
            _pair_score(
                f"dedup: near pairs (hamming <= {max_hamming})",
                truth_near,
                pred,  # type: ignore[arg-type]
                note="truth: exact and near copies, transitively; blank images excluded",
            )
        )
    photos = [(lab, r) for lab, r in ok if lab.get("kind") == "photo" and not lab.get("tiny")]
    for column, label, threshold in (
        ("rotation_upright_prob", "rotation (sky prior)", upright_min),
        ("rotation_net_upright_prob", "rotation_net (CNN)", net_upright_min),
    ):
        if column not in cols:
            continue

        def flagged(r: dict[str, Any], column: str = column, threshold: float = threshold) -> bool:
            return (r[column] if r[column] is not None else 1.0) < threshold

        def rotated(lab: dict[str, Any]) -> bool:
            return (lab.get("rotated") or 0) != 0

        scores.append(
            _binary(
                f"{label}: rotated photo (p_upright < {threshold})", photos, rotated, flagged, note="photo crops only"
            )
        )
        scores.append(
            _binary(
                f"{label}: any image flagged (p_upright < {threshold})",
                ok,
                rotated,
                flagged,
                note="all decodable images, text included",
            )
        )
    if "rotation_exif" in cols:
        scores.append(
            _binary(
                "rotation: EXIF orientation tag present",
                ok,
                lambda lab: lab.get("exif_orientation") not in (None, 1),
                lambda r: r.get("rotation_exif") not in (None, 1),
            )
        )
    if "entropy_bits" in cols:
        scores.append(
            _binary(
                f"entropy: blank/near-empty (bits < {entropy_min})",
                ok,
                lambda lab: bool(lab.get("blank")),
                lambda r: (r["entropy_bits"] if r["entropy_bits"] is not None else 8) < entropy_min,
            )
        )
    if "caption_issue" in cols:
        scores.append(
            _binary(
                "tokens: invalid caption",
                joined,
                lambda lab: bool(lab.get("caption_issue")),
                lambda r: r.get("caption_issue") is not None,
            )
        )
    if "nsfw_score" in cols:
        scores.append(
            _binary(
                f"nsfw: flagged (score > {nsfw_max})",
                ok,
                lambda lab: False,
                lambda r: (r["nsfw_score"] or 0.0) > nsfw_max,
                note="corpus has no NSFW images: only false positives are measurable",
            )
        )
    return scores


def _reason_score(joined: list[tuple[dict[str, Any], dict[str, Any]]]) -> Score:
    broken = [(lab, r) for lab, r in joined if lab.get("broken")]
    right = sum(1 for lab, r in broken if r.get("broken_reason") == lab["broken"])
    return Score(
        "broken: reason matches label",
        right,
        len(broken) - right,
        len(broken) - right,
        len(broken),
        note="tp = right reason, fp = fn = wrong reason",
    )


def to_markdown(scores: list[Score]) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        "| filter decision | precision | recall | TP | FP | FN | positives | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.name} | {fmt(s.precision)} | {fmt(s.recall)} | {s.tp} | {s.fp} | {s.fn} | {s.support} | {s.note} |"
        )
    return "\n".join(lines) + "\n"
