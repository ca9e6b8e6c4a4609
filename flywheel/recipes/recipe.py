"""Stage recipes: ordered selection rules over score columns, loaded from YAML.

A rule either bounds one column (`min`, `max`, `is_null`, `in`, `not_in`, or a SQL `keep`
expression), keeps the best fraction of a column (`top`, optionally within each category:
the distribution filter of the SFT stage) or deduplicates (`dedup: exact | perceptual | semantic`). Rules
apply in order, as the report's sequential filters do: a row is removed by the first rule it
fails, and every rule it fails is recorded as a reason. Dedup and `top` rules compare only rows
still alive at that point, so the members kept are ones that passed the rules before them.

`categories:` assign every row one category (general / portrait / text in the built-in recipes)
from SQL conditions over score columns, first match wins; `quotas:` then shape the kept rows to
the stated shares of each category, keeping the best rows of each (`keep_best_by`), or (`mode: sample`)
leave every row in and have the trainer draw the categories in those shares. `taxonomy:` caps the rows per
taxonomy node, keeping the best of each by a score column, and resamples the long tail with a temperature;
`augment:` fills a thin category from the retrieval index (keyword and image queries). `extends:` starts a
recipe from another one's fields and rules (the text curriculum recipes extend stage3_512p).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from flywheel.config import ConfigError, build, builtin_names, load_yaml, named_yaml
from flywheel.recipes.sections import CATEGORY, Augment, Category, Quotas, TaxonomyBalance, is_number
from flywheel.schema import TASKS
from flywheel.tracks import registry as track_registry

OnNull = Literal["keep", "reject"]
# A quality rule rejects data that is bad for any stage (broken, NSFW, tiny, caption missing); a distribution
# rule shapes this stage's distribution (aspect, rotation, entropy, CLIP). The pretrain track brings back rows
# that only distribution rules left out, and a `mix:` source is filtered by the quality rules by default.
RuleRole = Literal["quality", "distribution"]
MixRules = Literal["quality", "all", "none"]
# Workspace folders a `mix:` entry may name: track shards whose rows are curated-like samples (every pool
# column). tracks/rl holds preference pairs (the rl_dpo stage reads them) and tracks/prompt rewrite pairs.
# Cosine distance of the shared image embedding under which two images are one (bench/semdedup.py,
# docs/semdedup.md: the largest eps whose tune-set precision stays 1.0 up to 1.4 x eps; F1-optimal is 0.14).
SEMANTIC_EPS = 0.10
MIX_SOURCES = tuple(f"tracks/{name}" for name in track_registry.mixable())  # from flywheel.tracks.registry


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
    uses: list[str] = field(default_factory=list)  # further columns the `keep` expression reads
    dedup: Literal["exact", "perceptual", "semantic"] | None = None
    max_hamming: int = 6
    # semantic dedup only (flywheel.select.semantic_dedup): rows whose embeddings have 1 - cos <= eps are
    # duplicates (default SEMANTIC_EPS); `clusters` fixes the k-means cluster count (default ceil(sqrt(rows)))
    eps: float | None = None
    clusters: int | None = None
    # dedup only: keep the member with the highest value of this column first, then the recipe's keep_best_by
    best_by: str | None = None
    # perceptual dedup only: hash columns of other views of the same image (centre crops); the distance of
    # two rows is then the smallest over full view vs every view, found with multi-view LSH
    views: list[str] | None = None
    # `top: 0.3` keeps the best 30% of the rows still alive by `column` (highest first, or lowest with
    # `ascending: true`), within each value of `by` (a column, or `category`) when given.
    top: float | None = None
    by: str | None = None
    ascending: bool = False
    on_null: OnNull = "keep"
    role: RuleRole = "quality"
    why: str = ""

    def columns(self) -> list[str]:
        extra = [*self.uses, *(self.views or []), *([self.best_by] if self.best_by else [])]
        extra += [self.by] if self.by and self.by != CATEGORY else []
        return ([self.column] if self.column else []) + [c for c in extra if c != self.column]

    def describe(self) -> str:
        if self.dedup == "exact":
            return f"one per equal {self.column}"
        if self.dedup == "perceptual" and self.views:
            views = ", ".join([self.column or "", *self.views])
            return f"one per group with min hamming({self.column} vs {views}) <= {self.max_hamming}"
        if self.dedup == "perceptual":
            return f"one per group with hamming({self.column}) <= {self.max_hamming}"
        if self.dedup == "semantic":
            k = self.clusters if self.clusters is not None else "sqrt(rows)"
            return f"one per group with 1 - cos({self.column}) <= {self.semantic_eps} ({k} k-means clusters)"
        if self.top is not None:
            order = "lowest" if self.ascending else "highest"
            within = f" within each {self.by}" if self.by else ""
            return f"best {self.top:.0%} by {self.column} ({order} first){within}"
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

    @property
    def semantic_eps(self) -> float:
        return SEMANTIC_EPS if self.eps is None else float(self.eps)

    def validate(self) -> None:
        self._check_types()
        conditions = [self.min, self.max, self.is_null, self.values_in, self.not_in, self.keep, self.dedup, self.top]
        if all(c is None for c in conditions):
            raise ConfigError(f"rule {self.name!r} has no condition")
        if self.top is not None:
            if not is_number(self.top) or not 0 < self.top <= 1:
                raise ConfigError(f"rule {self.name!r}: top must be a fraction in (0, 1], got {self.top!r}")
            if not self.column or self.dedup:
                raise ConfigError(f"rule {self.name!r}: top needs a column to rank by (and no dedup)")
        elif self.by is not None:
            raise ConfigError(f"rule {self.name!r}: by groups a `top` rule; this rule has no top")
        if not isinstance(self.ascending, bool):
            raise ConfigError(f"rule {self.name!r}: ascending must be true or false")
        if self.dedup and not self.column:
            raise ConfigError(f"dedup rule {self.name!r} needs a column")
        if self.views and self.dedup != "perceptual":
            raise ConfigError(f"rule {self.name!r}: views apply to perceptual dedup only")
        if self.dedup != "semantic" and (self.clusters is not None or self.eps is not None):
            raise ConfigError(f"rule {self.name!r}: eps and clusters apply to semantic dedup only")
        if self.best_by and not self.dedup:
            raise ConfigError(f"rule {self.name!r}: best_by applies to dedup rules only")
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
        if self.role not in ("quality", "distribution"):
            raise ConfigError(f"rule {self.name!r}: role must be quality or distribution, not {self.role!r}")

    def _check_types(self) -> None:
        """One clear line per wrongly typed parameter (YAML and --set values arrive untyped)."""
        where = f"rule {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"rule name must be text, got {self.name!r}")
        for param in ("min", "max"):
            value = getattr(self, param)
            if value is not None and not is_number(value):
                raise ConfigError(f"{where}: {param} must be a number, got {value!r}")
        for param in ("column", "keep", "why"):
            value = getattr(self, param)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where}: {param} must be text, got {value!r}")
        if self.is_null is not None and not isinstance(self.is_null, bool):
            raise ConfigError(f"{where}: is_null must be true or false, got {self.is_null!r}")
        for param, value in (("in", self.values_in), ("not_in", self.not_in)):
            if value is not None and not isinstance(value, list):
                raise ConfigError(f"{where}: {param} must be a list like [a, b], got {value!r}")
        if self.dedup is not None and self.dedup not in ("exact", "perceptual", "semantic"):
            raise ConfigError(f"{where}: dedup must be exact, perceptual or semantic, got {self.dedup!r}")
        if self.eps is not None and (not is_number(self.eps) or not 0 <= self.eps < 1):
            raise ConfigError(f"{where}: eps must be a cosine distance in [0, 1), got {self.eps!r}")
        if self.clusters is not None and (
            not isinstance(self.clusters, int) or isinstance(self.clusters, bool) or self.clusters < 1
        ):
            raise ConfigError(f"{where}: clusters must be a whole number >= 1, got {self.clusters!r}")
        if self.best_by is not None and not isinstance(self.best_by, str):
            raise ConfigError(f"{where}: best_by must be a column name, got {self.best_by!r}")
        if not isinstance(self.max_hamming, int) or isinstance(self.max_hamming, bool) or self.max_hamming < 0:
            raise ConfigError(f"{where}: max_hamming must be a whole number >= 0, got {self.max_hamming!r}")


@dataclass(frozen=True)
class MixSource:
    """One `mix:` entry: track rows brought into the stage with a sampling weight.

    `weight` is the probability that the stage's data loader draws a sample from this source (the curated
    shards get 1 - sum of the mix weights). `rules` says which of the recipe's rules the source's rows must
    pass: `quality` (default: the track exists to bring back rows only distribution rules left out), `all`
    or `none`. `max_rows` caps the rows taken (best first, in the track's order)."""

    source: str  # the YAML key is `from`
    weight: float
    rules: MixRules = "quality"
    max_rows: int | None = None

    @property
    def slug(self) -> str:
        return self.source.replace("/", "-")

    def validate(self, where: str) -> None:
        if self.source not in MIX_SOURCES:
            raise ConfigError(f"{where}: mix from {self.source!r} is not mixable; mixable: {list(MIX_SOURCES)}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float) or not 0 < self.weight < 1:
            raise ConfigError(f"{where}: mix weight must be a number in (0, 1), got {self.weight!r}")
        if self.rules not in ("quality", "all", "none"):
            raise ConfigError(f"{where}: mix rules must be quality, all or none, got {self.rules!r}")
        if self.max_rows is not None and (not isinstance(self.max_rows, int) or self.max_rows < 1):
            raise ConfigError(f"{where}: mix max_rows must be a positive integer")


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
    mix: list[MixSource] = field(default_factory=list)
    categories: list[Category] = field(default_factory=list)
    quotas: Quotas | None = None
    taxonomy: TaxonomyBalance | None = None
    augment: Augment | None = None
    seed: int = 0  # orders ties (and unranked rows) inside taxonomy nodes: the same seed, the same selection

    def quality_rules(self) -> list[Rule]:
        """Threshold rules that judge a sample's quality (not dedup, not distribution shaping)."""
        return [r for r in self.rules if r.role == "quality" and not r.dedup]

    def distribution_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.role == "distribution" and not r.dedup]

    # Set by with_overrides only: the recipe this one was derived from and the `--set` values applied.
    # A derived recipe is named `<base>+<hash of overrides>`, so its selection never replaces the base's.
    base: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Types of the recipe's own fields; `tasks: T2I` (a string, not a list) is an error, not 0 rows."""
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"recipe name must be text, got {self.name!r}")
        if not isinstance(self.tasks, list) or not all(isinstance(t, str) for t in self.tasks):
            raise ConfigError(f"recipe {self.name}: tasks must be a list like [T2I], got {self.tasks!r}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ConfigError(f"recipe {self.name}: tasks {self.tasks!r} must be a non-empty list of {list(TASKS)}")
        if not isinstance(self.keep_best_by, list) or not all(isinstance(t, str) for t in self.keep_best_by):
            raise ConfigError(f"recipe {self.name}: keep_best_by must be a list of 'COLUMN [ASC|DESC]' texts")
        for param in ("stage", "resolution"):
            value = getattr(self, param)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(f"recipe {self.name}: {param} must be a whole number, got {value!r}")
        if not isinstance(self.description, str):
            raise ConfigError(f"recipe {self.name}: description must be text")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"recipe {self.name}: seed must be a whole number, got {self.seed!r}")
        self._validate_categories()
        if self.taxonomy is not None:
            self.taxonomy.validate(f"recipe {self.name}")
        if self.augment is not None:
            self.augment.validate(f"recipe {self.name}", [c.name for c in self.categories])

    def _validate_categories(self) -> None:
        where = f"recipe {self.name}"
        names = [c.name for c in self.categories]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{where}: category names must be unique, non-empty text: {names}")
        if self.categories:
            if self.categories[-1].when is not None or any(c.when is None for c in self.categories[:-1]):
                raise ConfigError(f"{where}: every category but the last needs `when`; the last (the default) has none")
            if any(not isinstance(c.when, str) for c in self.categories[:-1]):
                raise ConfigError(f"{where}: a category's `when` must be a SQL condition (text)")
        uses_category = [r.name for r in self.rules if r.by == CATEGORY]
        if (uses_category or self.quotas) and not self.categories:
            raise ConfigError(f"{where}: rules {uses_category} / quotas need `categories:` to group by")
        if self.quotas is not None:
            shares = self.quotas.shares
            if not isinstance(shares, dict) or set(shares) != set(names):
                raise ConfigError(f"{where}: quotas.shares must give a share for each category {names}")
            if not all(is_number(v) and v >= 0 for v in shares.values()) or abs(sum(shares.values()) - 1) > 1e-6:
                raise ConfigError(f"{where}: quotas.shares must be numbers >= 0 summing to 1, got {shares}")
            if self.quotas.mode not in ("select", "sample"):
                raise ConfigError(f"{where}: quotas.mode must be select or sample, got {self.quotas.mode!r}")

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise ConfigError(f"recipe {self.name} has no rule {name!r}; rules: {[r.name for r in self.rules]}")

    def with_overrides(self, overrides: dict[str, str]) -> Recipe:
        """Apply `rule.param=value` overrides (e.g. `nsfw.max=0.3`) without editing the YAML.

        The rebalancing sections take the same form (`taxonomy.cap=20`, `taxonomy.caps.object=10`,
        `quotas.shares.portrait=0.3`, `quotas.mode=sample`, `augment.min_share=0.25`, `seed=3`) when the recipe
        has that section and no rule of that name. The result is named `<recipe>+<8 hex of the overrides>` and
        records them, so an experiment writes `curated/<recipe>+<hash>/` beside the recipe's own selection
        instead of replacing it; it is validated as a whole, like a loaded recipe.
        """
        if not overrides:
            return self
        rules = list(self.rules)
        sections: dict[str, Any] = {}
        seed = self.seed
        for key, raw in overrides.items():
            if key == "seed":
                seed = _parse_value(raw)
                continue
            if "." not in key:
                raise ConfigError(f"override {key!r} must look like RULE.PARAM=VALUE")
            rule_name, param = key.split(".", 1)
            idx = next((i for i, r in enumerate(rules) if r.name == rule_name), None)
            if idx is None and rule_name in _SECTIONS:
                section = sections.get(rule_name, getattr(self, rule_name))
                sections[rule_name] = _override_section(self.name, key, section, param, _parse_value(raw))
                continue
            if idx is None:
                raise ConfigError(f"override {key!r}: recipe {self.name} has no rule {rule_name!r}")
            if param not in Rule.__dataclass_fields__ or param == "name":
                raise ConfigError(f"override {key!r}: unknown rule parameter {param!r}")
            rules[idx] = replace(rules[idx], **{param: _parse_value(raw)})
            rules[idx].validate()
        merged = {**self.overrides, **{k: str(v) for k, v in overrides.items()}}
        base = self.base or self.name
        digest = hashlib.sha256(json.dumps(merged, sort_keys=True).encode()).hexdigest()[:8]
        out = replace(self, rules=rules, name=f"{base}+{digest}", base=base, overrides=merged, seed=seed, **sections)
        out.validate()
        return out


# Recipe sections `--set SECTION.FIELD=VALUE` reaches (dataclasses; dict fields take SECTION.FIELD.KEY).
_SECTIONS = ("taxonomy", "augment", "quotas")


def _override_section(recipe: str, key: str, section: Any, param: str, value: Any) -> Any:
    """`section` with `param` (FIELD or FIELD.KEY of a dict field) set to `value`; one-line errors otherwise."""
    if section is None:
        raise ConfigError(f"override {key!r}: recipe {recipe} has no `{key.split('.')[0]}:` section to change")
    name, _, item = param.partition(".")
    if name not in section.__dataclass_fields__ or name == "why":
        known = sorted(f for f in section.__dataclass_fields__ if f != "why")
        raise ConfigError(f"override {key!r}: unknown parameter {name!r}; known: {known}")
    current = getattr(section, name)
    if item:
        if not isinstance(current, dict):
            raise ConfigError(f"override {key!r}: {name} is not a mapping; use {key.rsplit('.', 1)[0]}=VALUE")
        value = {**current, item: value}
    return replace(section, **{name: value})


def _parse_value(raw: str) -> Any:
    import yaml

    return yaml.safe_load(raw)


def _builtin_dir() -> Path:
    return Path(str(resources.files("flywheel.recipes") / "builtin"))


def builtin_recipes() -> list[str]:
    return builtin_names(_builtin_dir())


def load_recipe(name_or_path: str) -> Recipe:
    """A built-in recipe by name, or a YAML file by path.

    `extends: BASE` (a built-in name or a path) starts from BASE: every key this file does not set is
    BASE's, and its rules are BASE's rules with this file's rules of the same name replacing them in place
    and the others inserted before BASE's first dedup rule (so duplicates are judged among the rows the new
    rules keep), except ranking rules (`top:`), which go last: they rank the rows every other rule kept.
    A stage's quality rules are written once; the curriculum steps and `sft` add theirs.
    """
    path = named_yaml(name_or_path, _builtin_dir(), "recipe")
    data = load_yaml(path)
    base = data.pop("extends", None)
    if base is not None:
        data = _extended(data, base, path)
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
    reserved = {"base", "overrides"} & set(data)
    if reserved:
        raise ConfigError(f"{path}: {sorted(reserved)} are set by --set overrides, not in a recipe file")
    mix = parse_mix(data.pop("mix", None), path.name)
    categories = [
        build(Category, c, f"{path.name}:categories[{i}]")
        for i, c in enumerate(_mappings(data.pop("categories", None), path.name, "categories"))
    ]
    raw_quotas = data.pop("quotas", None)
    quotas = None
    if raw_quotas is not None:
        quotas = build(Quotas, _mapping(raw_quotas, path.name, "quotas"), f"{path.name}:quotas")
    raw_taxonomy = data.pop("taxonomy", None)
    taxonomy = None
    if raw_taxonomy is not None:
        taxonomy = build(TaxonomyBalance, _mapping(raw_taxonomy, path.name, "taxonomy"), f"{path.name}:taxonomy")
    raw_augment = data.pop("augment", None)
    augment = None
    if raw_augment is not None:
        raw_augment = _mapping(raw_augment, path.name, "augment")
        if "category" not in raw_augment or "min_share" not in raw_augment:
            raise ConfigError(f"{path.name}: augment needs `category` and `min_share`")
        augment = build(Augment, raw_augment, f"{path.name}:augment")
    data.setdefault("name", path.stem)
    recipe = replace(
        build(Recipe, data, path.name),
        rules=rules,
        mix=mix,
        categories=categories,
        quotas=quotas,
        taxonomy=taxonomy,
        augment=augment,
    )
    recipe.validate()
    return recipe


def _extended(data: dict[str, Any], base: Any, path: Path, seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """`data` laid over the raw YAML of the recipe it extends (which may itself extend another); a relative
    path is read beside the extending file, a bare name is a built-in recipe."""
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path.name}: extends must name a recipe (built-in name or path), got {base!r}")
    beside = path.parent / base
    base_path = beside if beside.is_file() else named_yaml(base, _builtin_dir(), "recipe")
    seen = seen | {path.resolve()}
    if base_path.resolve() in seen:
        raise ConfigError(f"{path.name}: a recipe cannot extend itself (extends {base!r} loops back)")
    parent = load_yaml(base_path)
    grand = parent.pop("extends", None)
    if grand is not None:
        parent = _extended(parent, grand, base_path, seen)
    merged = {**{k: v for k, v in parent.items() if k not in ("name", "description")}, **data}
    own = data.get("rules") or []
    if not isinstance(own, list) or not all(isinstance(r, dict) and "name" in r for r in own):
        raise ConfigError(f"{path.name}: rules must be a list of mappings with a name")
    by_name = {r["name"]: r for r in own}
    inherited = [by_name.pop(r["name"], r) for r in parent.get("rules") or [] if isinstance(r, dict)]
    added = [r for r in own if r["name"] in by_name and "top" not in r]
    ranking = [r for r in own if r["name"] in by_name and "top" in r]  # rank what every other rule kept: last
    first_dedup = next((i for i, r in enumerate(inherited) if r.get("dedup")), len(inherited))
    merged["rules"] = inherited[:first_dedup] + added + inherited[first_dedup:] + ranking
    return merged


def _mapping(raw: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {key} must be a mapping, got {raw!r}")
    return raw


def _mappings(raw: Any, where: str, key: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ConfigError(f"{where}: {key} must be a list of mappings")
    return raw


def parse_mix(raw: Any, where: str) -> list[MixSource]:
    """The `mix:` key: a list of `{from: tracks/pretrain, weight: 0.1[, rules: quality][, max_rows: N]}`."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: mix must be a list of {{from, weight}} mappings")
    out: list[MixSource] = []
    for i, entry in enumerate(raw):
        key = f"{where}:mix[{i}]"
        if not isinstance(entry, dict) or "from" not in entry or "weight" not in entry:
            raise ConfigError(f"{key}: each mix entry needs `from` and `weight`")
        entry = dict(entry)
        entry["source"] = entry.pop("from")
        source = build(MixSource, entry, key)
        source.validate(key)
        out.append(source)
    sources = [m.source for m in out]
    if len(set(sources)) != len(sources):
        raise ConfigError(f"{where}: each mix source may appear once: {sources}")
    total = sum(m.weight for m in out)
    if total >= 1:
        raise ConfigError(f"{where}: mix weights sum to {total:g}; they must leave the curated set a share (< 1)")
    return out
