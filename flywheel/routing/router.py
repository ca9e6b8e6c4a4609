"""Routing the store's bad cases: gather evidence, apply the YAML policy (and the learned router), record.

Modes: `rules` (the policy alone), `learned` (the learned router alone), `blend` (the learned router where
it is confident, the rules otherwise). The evidence stored with each case always holds the rule that fired,
its checked conditions, and the learned router's opinion when there is one, so an annotator sees why.
Cases an annotator already decided keep their decision.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flywheel.badcases.store import BadCaseStore, Route
from flywheel.errors import UserError
from flywheel.routing.evidence import CoverageProbe, gather_evidence
from flywheel.routing.learned import LearnedRouter
from flywheel.routing.policy import Policy

MODES = ("rules", "learned", "blend")


@dataclass
class RouteSummary:
    routed: int = 0
    kept_annotator: int = 0
    by_track: dict[str, int] = field(default_factory=dict)
    by_rule: dict[str, int] = field(default_factory=dict)
    coverage_measured: bool = False


def decide_track(
    evidence: dict[str, Any], policy: Policy, mode: str, learned: LearnedRouter | None, min_confidence: float
) -> tuple[str, str, dict[str, Any]]:
    """(track, by, extra evidence) for one case."""
    rule, checked = policy.route(evidence)
    extra: dict[str, Any] = {
        "rule": rule.name,
        "rule_track": rule.track,
        "why": rule.why,
        "conditions": checked,
        "policy": policy.name,
    }
    if learned is None or mode == "rules":
        return rule.track, f"rule:{rule.name}", extra
    ((track, prob),) = learned.predict([evidence])
    extra["learned"] = {"track": track, "probability": prob, "cv_agreement": learned.cv_agreement}
    if mode == "learned" or prob >= min_confidence:
        return track, "learned", extra
    return rule.track, f"rule:{rule.name}", extra


def route_store(
    store: BadCaseStore,
    policy: Policy,
    probe: CoverageProbe | None,
    *,
    mode: str = "rules",
    learned: LearnedRouter | None = None,
    min_confidence: float = 0.7,
    reroute: bool = False,
) -> RouteSummary:
    if mode not in MODES:
        raise UserError(f"routing mode {mode!r} unknown; use one of {MODES}")
    if mode != "rules" and learned is None:
        raise UserError(f"mode {mode} needs a learned router: run `flywheel route-fit` first")
    cases = store.list(kind="bad")
    summary = RouteSummary(kept_annotator=sum(1 for c in cases if (c["track_by"] or "").startswith("annotator:")))
    todo = [c for c in cases if not (c["track_by"] or "").startswith("annotator:") and (reroute or c["track"] is None)]
    if not todo:
        return summary
    evidence = gather_evidence(todo, probe, policy.lexicons)
    summary.coverage_measured = probe is not None
    routes, tracks, rules = [], Counter(), Counter()
    for case, ev in zip(todo, evidence, strict=True):
        track, by, extra = decide_track(ev, policy, mode, learned, min_confidence)
        routes.append(Route(case["case_id"], track, by, {**ev, **extra}))
        tracks[track] += 1
        rules[extra["rule"]] += 1
    summary.routed = store.record_routes(routes)
    summary.by_track, summary.by_rule = dict(tracks), dict(rules)
    return summary
