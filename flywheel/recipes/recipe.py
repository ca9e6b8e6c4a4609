"""Stage recipes: ordered selection rules over score columns, loaded from YAML.

A rule either bounds one column (`min`, `max`, `is_null`, `in`, `not_in`, or a SQL `keep`
expression) or deduplicates (`dedup: exact | perceptual`). Rules apply in order, as the
report's sequential filters do: a row is removed by the first rule it fails, and every
rule it fails is recorded as a reason. Dedup rules compare only rows still alive at that
point, so the member kept from each group is one that passed the rules before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from flywheel.config import ConfigError, build, load_yaml

OnNull = Literal["keep", "reject"]


@dataclass(frozen=True)
class Rule:
    name: str
    column: str | None = None
    min: float | None = None
    max: float | None = None
    is_null: bool | None = None
    values_in: list[Any] | None = None
    not_in: list[Any] | None = None
    keep: str | None = None  # SQL boolean expression: TRUE keeps the row
    dedup: Literal["exact", "perceptual"] | None = None
    max_hamming: int = 6
    on_null: OnNull = "keep"
    why: str = ""

    def columns(self) -> list[str]:
        return [self.column] if self.column else []

    def describe(self) -> str:
        if self.dedup == "exact":
            return f"one per equal {self.column}"
        if self.dedup == "perceptual":
            return f"one per group with hamming({self.column}) <= {self.max_hamming}"
        parts = []
        if self.min is not None:
            parts.append(f"{self.column} >= {self.min}")
        if self.max is not None:
            parts.append(f"{self.column} <= {self.max}")
        if self.is_null is not None:
            parts.append(f"{self.column} IS {'' if self.is_null else 'NOT '}NULL")
        if self.values_in is not None:
            parts.append(f"{self.column} IN {self.values_in}")
        if self.not_in is not None:
            parts.append(f"{self.column} NOT IN {self.not_in}")
        if self.keep:
            parts.append(self.keep)
        return " AND ".join(parts) or "(no condition)"

    def validate(self) -> None:
        for param in ("min", "max"):  # `--set nsfw.max=abc` must be one clear line, not a DuckDB traceback
            value = getattr(self, param)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(f"rule {self.name!r}: {param} must be a number, got {value!r}")
        if isinstance(self.max_hamming, bool) or not isinstance(self.max_hamming, int):
            raise ConfigError(f"rule {self.name!r}: max_hamming must be an integer, got {self.max_hamming!r}")
        if self.is_null is not None and not isinstance(self.is_null, bool):
            raise ConfigError(f"rule {self.name!r}: is_null must be true or false, got {self.is_null!r}")
        for param in ("values_in", "not_in"):
            value = getattr(self, param)
            if value is not None and not isinstance(value, list):
                raise ConfigError(f"rule {self.name!r}: {param} must be a list, got {value!r}")
        conditions = [self.min, self.max, self.is_null, self.values_in, self.not_in, self.keep, self.dedup]
        if all(c is None for c in conditions):
            raise ConfigError(f"rule {self.name!r} has no condition")
        if self.dedup and not self.column:
            raise ConfigError(f"dedup rule {self.name!r} needs a column")
        if (
            self.min is not None
            or self.max is not None
            or self.is_null is not None
            or self.values_in is not None
            or self.not_in is not None
        ) and not self.column:
            raise ConfigError(f"rule {self.name!r} bounds a value but names no column")
        if self.on_null not in ("keep", "reject"):
            raise ConfigError(f"rule {self.name!r}: on_null must be keep or reject")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    stage: int | None = None
    resolution: int | None = None  # target resolution bucket the trainer uses for this stage
    tasks: list[str] = field(default_factory=lambda: ["T2I"])
    keep_best_by: list[str] = field(
        default_factory=lambda: ["resolution_megapixels DESC NULLS LAST", "file_bytes DESC NULLS LAST", "id"]
    )
    rules: list[Rule] = field(default_factory=list)

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise ConfigError(f"recipe {self.name} has no rule {name!r}; rules: {[r.name for r in self.rules]}")

    def with_overrides(self, overrides: dict[str, str]) -> Recipe:
        """Apply `rule.param=value` overrides (e.g. `nsfw.max=0.3`) without editing the YAML."""
        rules = list(self.rules)
        for key, raw in overrides.items():
            if "." not in key:
                raise ConfigError(f"override {key!r} must look like RULE.PARAM=VALUE")
            rule_name, param = key.split(".", 1)
            idx = next((i for i, r in enumerate(rules) if r.name == rule_name), None)
            if idx is None:
                raise ConfigError(f"override {key!r}: recipe {self.name} has no rule {rule_name!r}")
            if param not in Rule.__dataclass_fields__ or param == "name":
                raise ConfigError(f"override {key!r}: unknown rule parameter {param!r}")
            rules[idx] = replace(rules[idx], **{param: _parse_value(raw)})
            rules[idx].validate()
        return replace(self, rules=rules)


def _parse_value(raw: str) -> Any:
    import yaml

    return yaml.safe_load(raw)


def _builtin_dir() -> Path:
    return Path(str(resources.files("flywheel.recipes") / "builtin"))


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in _builtin_dir().glob("*.yaml"))


def load_recipe(name_or_path: str) -> Recipe:
    """A built-in recipe by name, or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = _builtin_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown recipe {name_or_path!r}; built-in: {builtin_recipes()} (or pass a YAML path)")
    data = load_yaml(path)
    rules = []
    for i, raw in enumerate(data.pop("rules", []) or []):
        if not isinstance(raw, dict) or "name" not in raw:
            raise ConfigError(f"{path}: rule #{i} must be a mapping with a name")
        raw = dict(raw)
        if "in" in raw:
            raw["values_in"] = raw.pop("in")
        rule = build(Rule, raw, f"{path.name}:rules[{raw['name']}]")
        rule.validate()
        rules.append(rule)
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: rule names must be unique: {names}")
    data.setdefault("name", path.stem)
    recipe = build(Recipe, data, path.name)
    return replace(recipe, rules=rules)
