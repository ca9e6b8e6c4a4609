"""The funnel report: rows in, rows each rule removed (in order), rows kept.

`removed` counts rows a rule removed first (they were still alive when it ran), so the
removed counts add up to `rejected`. `failed_total` counts every row that fails the rule,
including rows an earlier rule already removed, which shows how rules overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RuleOutcome:
    name: str
    condition: str
    column: str | None = None
    removed: int = 0
    failed_total: int = 0
    null_rows: int = 0
    groups: int | None = None
    note: str = ""


@dataclass
class Funnel:
    recipe: str
    rows_in: int = 0
    kept: int = 0
    rejected: int = 0
    rules: list[RuleOutcome] = field(default_factory=list)
    not_applied: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # facts about the pool the user must see (no captions)
    by_reason: dict[str, int] = field(default_factory=dict)
    # category -> {"in": rows assigned, "kept": rows kept} when the recipe has `categories:`
    by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    # top taxonomy node (first part of taxonomy_path) -> {"in", "kept"} when the pool has the column
    by_taxonomy: dict[str, dict[str, int]] = field(default_factory=dict)
    # what the recipe's `taxonomy:` and `augment:` keys did (node targets, rows moved, queries searched)
    rebalance: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def removed_by_rule(self) -> dict[str, int]:
        return {r.name: r.removed for r in self.rules}

    def check(self) -> None:
        """Accounting invariant: every input row is kept or removed by exactly one rule."""
        if self.kept + self.rejected != self.rows_in or sum(self.removed_by_rule.values()) != self.rejected:
            raise AssertionError(f"funnel does not add up: {self.to_json()}")

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "rows_in": self.rows_in,
            "kept": self.kept,
            "rejected": self.rejected,
            "removed_by_rule": self.removed_by_rule,
            "rules": [vars(r) for r in self.rules],
            "not_applied": self.not_applied,
            "warnings": self.warnings,
            "by_category": self.by_category,
            "by_taxonomy": self.by_taxonomy,
            "rebalance": self.rebalance,
            "seconds": self.seconds,
        }

    def to_text(self) -> str:
        width = max([len(r.name) for r in self.rules] + [8])
        lines = [f"recipe {self.recipe}: {self.rows_in} rows in", ""]
        lines.append(f"  {'rule':<{width}}  {'removed':>8}  {'fails':>8}  {'left':>8}  condition")
        left = self.rows_in
        for r in self.rules:
            left -= r.removed
            note = f"  ({r.note})" if r.note else ""
            lines.append(f"  {r.name:<{width}}  {r.removed:>8}  {r.failed_total:>8}  {left:>8}  {r.condition}{note}")
        for na in self.not_applied:
            lines.append(f"  {na['rule']:<{width}}  {'-':>8}  {'-':>8}  {left:>8}  not applied: {na['why']}")
        pct = 100.0 * self.kept / self.rows_in if self.rows_in else 0.0
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += ["", f"kept {self.kept} of {self.rows_in} ({pct:.1f}%), rejected {self.rejected}"]
        if self.by_category:
            lines += ["", f"  {'category':<{width}}  {'in':>8}  {'kept':>8}  {'share':>6}"]
            for name, c in self.by_category.items():
                share = 100.0 * c["kept"] / self.kept if self.kept else 0.0
                lines.append(f"  {name:<{width}}  {c['in']:>8}  {c['kept']:>8}  {share:>5.1f}%")
        if self.by_taxonomy:
            node_width = max([len(n) for n in self.by_taxonomy] + [width])
            lines += ["", f"  {'taxonomy':<{node_width}}  {'in':>8}  {'kept':>8}  {'share':>6}"]
            for name, c in self.by_taxonomy.items():
                share = 100.0 * c["kept"] / self.kept if self.kept else 0.0
                lines.append(f"  {name:<{node_width}}  {c['in']:>8}  {c['kept']:>8}  {share:>5.1f}%")
        augment = self.rebalance.get("augment")
        if augment:
            lines += ["", f"  augment {augment['category']}: {augment['note']}"]
        return "\n".join(lines) + "\n"
