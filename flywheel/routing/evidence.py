"""Attribution evidence for one bad case: knowledge coverage, metric signals, instruction complexity, complaint.

Every feature is a plain float (or None when it could not be measured), so the same dict drives the visible
YAML rules, is stored with the case, and is the learned router's input vector.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from flywheel.retrieval.engine import RetrievalEngine
from flywheel.retrieval.space import TextEmbedder

COVERAGE_FEATURES = (
    "pool_top_sim",
    "pool_mean_sim",
    "pool_count",
    "curated_top_sim",
    "curated_mean_sim",
    "curated_count",
)
METRIC_FEATURES = ("reward", "quality_fail", "alignment_fail", "edit_fail", "n_tags", "rating", "low_rating")
INSTRUCTION_FEATURES = ("n_counts", "n_spatial", "n_negation", "n_quoted", "n_words", "complexity")
COMPLAINT_FEATURES = ("complaint_unknown", "complaint_missing", "complaint_quality", "complaint_instruction")
FEATURES = COVERAGE_FEATURES + METRIC_FEATURES + INSTRUCTION_FEATURES + COMPLAINT_FEATURES

_NUMBER_WORDS = r"two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|several|pair of|both|\d+"
_COUNTS = re.compile(rf"\b({_NUMBER_WORDS})\b", re.I)
_SPATIAL = re.compile(
    r"\b(left of|right of|to the left|to the right|above|below|behind|in front of|next to|"
    r"between|under|on top of|beside|underneath|inside|outside|facing)\b",
    re.I,
)
_NEGATION = re.compile(r"\b(no|not|without|never|none|nothing)\b|n't\b", re.I)
_QUOTED = re.compile(r"\"[^\"]+\"|“[^”]+”|'[^']{2,}'|「[^」]+」")


def instruction_signals(prompt: str) -> dict[str, float]:
    """Counts of the constructions that make an instruction easy to misread."""
    n_counts = len(_COUNTS.findall(prompt))
    n_spatial = len(_SPATIAL.findall(prompt))
    n_negation = len(_NEGATION.findall(prompt))
    n_quoted = len(_QUOTED.findall(prompt))
    n_words = len(prompt.split())
    complexity = n_counts + n_spatial + n_negation + max(0, n_quoted - 1) + (1 if n_words > 30 else 0)
    return {
        "n_counts": float(n_counts),
        "n_spatial": float(n_spatial),
        "n_negation": float(n_negation),
        "n_quoted": float(n_quoted),
        "n_words": float(n_words),
        "complexity": float(complexity),
    }


def complaint_signals(complaint: str | None, lexicons: dict[str, Sequence[str]]) -> dict[str, float]:
    text = (complaint or "").lower().replace("’", "'")
    return {name: float(sum(1 for phrase in lexicons.get(name, ()) if phrase in text)) for name in COMPLAINT_FEATURES}


def metric_signals(case: dict[str, Any]) -> dict[str, float | None]:
    tags = set(case.get("failure_tags") or [])
    rating = case.get("rating")
    return {
        "reward": case.get("reward"),
        "quality_fail": float("low_quality" in tags),
        "alignment_fail": float(bool(tags & {"object_missing", "text_wrong", "text_unreadable"})),
        "edit_fail": float(bool(tags & {"edit_ignored", "edit_destroyed"})),
        "n_tags": float(len(tags)),
        "rating": rating,
        "low_rating": None if rating is None else float(rating <= 2),
    }


class CoverageProbe(Protocol):
    def coverage(self, concepts: Sequence[str]) -> list[dict[str, float | None]]:
        """One dict of COVERAGE_FEATURES per concept."""
        ...


@dataclass
class IndexCoverage:
    """Coverage from the retrieval engine: neighbours of the concept among pool and curated captions."""

    engine: RetrievalEngine
    embedder: TextEmbedder
    k: int = 10
    near_similarity: float = 0.5

    def coverage(self, concepts: Sequence[str]) -> list[dict[str, float | None]]:
        table = self.engine.find("caption", text_queries=True)
        if table.space != self.embedder.space:
            raise ValueError(
                f"caption index holds {table.space.describe()}, the text embedder makes "
                f"{self.embedder.space.describe()}"
            )
        vectors = self.embedder.embed_texts(list(concepts))
        out = []
        for vec in vectors:
            row: dict[str, float | None] = {}
            for prefix, where in (("pool", None), ("curated", "curated = true")):
                hits = self.engine.search(table.name, vec, k=self.k, where=where, columns=["id"])
                sims = np.asarray(hits.column("similarity").to_numpy(zero_copy_only=False), dtype=np.float64)
                row[f"{prefix}_top_sim"] = float(sims.max()) if len(sims) else 0.0
                row[f"{prefix}_mean_sim"] = float(sims.mean()) if len(sims) else 0.0
                row[f"{prefix}_count"] = float((sims >= self.near_similarity).sum())
            out.append(row)
        return out


def concepts_of(case: dict[str, Any]) -> list[str]:
    """What to look up: the expected object class when the evaluation names one, else the prompt itself."""
    label = case.get("expected_label")
    return [label] if label else [case["prompt"]]


def gather_evidence(
    cases: Sequence[dict[str, Any]], probe: CoverageProbe | None, lexicons: dict[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """Evidence dicts for `cases`, coverage batched over all concepts (the least-covered concept counts)."""
    concept_lists = [concepts_of(c) for c in cases]
    flat = [c for cs in concept_lists for c in cs]
    covs = probe.coverage(flat) if probe is not None and flat else [dict.fromkeys(COVERAGE_FEATURES) for _ in flat]
    out, i = [], 0
    for case, concepts in zip(cases, concept_lists, strict=True):
        mine = covs[i : i + len(concepts)]
        i += len(concepts)
        worst = min(mine, key=lambda c: (c.get("curated_top_sim") is None, c.get("curated_top_sim") or 0.0))
        ev: dict[str, Any] = {
            **worst,
            **metric_signals(case),
            **instruction_signals(case["prompt"]),
            **complaint_signals(case.get("complaint"), lexicons),
        }
        ev["concepts"] = concepts
        out.append(ev)
    return out
