"""The YAML routing policy: ordered rules over evidence features with visible thresholds; first match wins."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from flywheel.config import ConfigError, build, load_yaml
from flywheel.routing.evidence import COMPLAINT_FEATURES, FEATURES
from flywheel.tracks import registry

DEFAULT_POLICY = "default_policy.yaml"  # package data of flywheel.routing


@dataclass
class Bound:
    min: float | None = None
    max: float | None = None


@dataclass
class PolicyRule:
    name: str
    track: str
    why: str = ""
    when: dict[str, Any] = field(default_factory=dict)


@dataclass
class CoverageSettings:
    k: int = 10
    near_similarity: float = 0.5


@dataclass
class Policy:
    name: str
    rules: list[Any]
    coverage: CoverageSettings = field(default_factory=CoverageSettings)
    lexicons: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        if path is None:
            text = resources.files("flywheel.routing").joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")
            import yaml

            data = yaml.safe_load(text)
            where = f"flywheel/routing/{DEFAULT_POLICY}"
        else:
            data, where = load_yaml(path), str(path)
        policy = build(cls, data, where)
        policy.rules = [
            build(PolicyRule, r, f"{where}: rules[{i}]") if isinstance(r, dict) else r
            for i, r in enumerate(policy.rules)
        ]
        policy.check(where)
        return policy

    def check(self, where: str) -> None:
        if not self.rules:
            raise ConfigError(f"{where}: a policy needs at least one rule")
        unknown_lex = set(self.lexicons) - set(COMPLAINT_FEATURES)
        if unknown_lex:
            raise ConfigError(f"{where}: unknown lexicon(s) {sorted(unknown_lex)}; known: {list(COMPLAINT_FEATURES)}")
        for rule in self.rules:
            if rule.track not in registry.routable():
                raise ConfigError(f"{where}: rule {rule.name}: track {rule.track!r} not in {registry.routable()}")
            for feature, bound in rule.when.items():
                if feature not in FEATURES:
                    raise ConfigError(
                        f"{where}: rule {rule.name}: unknown feature {feature!r}; known: {list(FEATURES)}"
                    )
                if not isinstance(bound, dict):
                    raise ConfigError(f"{where}: rule {rule.name}: {feature} must be {{min: X, max: Y}}")
                b = build(Bound, bound, f"{where}: rules.{rule.name}.{feature}")
                rule.when[feature] = b
        if self.rules[-1].when:
            raise ConfigError(f"{where}: the last rule must have no conditions (`when: {{}}`) so every case routes")

    def route(self, evidence: dict[str, Any]) -> tuple[PolicyRule, dict[str, Any]]:
        """The first rule whose conditions hold, and the checked conditions with the values they saw."""
        for rule in self.rules:
            checked = {}
            ok = True
            for feature, bound in rule.when.items():
                value = evidence.get(feature)
                holds = (
                    value is not None
                    and (bound.min is None or value >= bound.min)
                    and (bound.max is None or value <= bound.max)
                )
                checked[feature] = {"value": value, "min": bound.min, "max": bound.max}
                if not holds:
                    ok = False
                    break
            if ok:
                return rule, checked
        raise AssertionError("unreachable: the last rule has no conditions")  # guaranteed by check()
