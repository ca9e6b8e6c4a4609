"""The recipe sections that shape the kept rows beyond per-row rules: categories, quotas, taxonomy, augment.

Each is a typed, validated dataclass that `flywheel.recipes.recipe` parses from YAML (`categories:`,
`quotas:`, `taxonomy:`, `augment:`) and `flywheel.select` applies (categories and quotas in the engine,
the taxonomy in `select/rebalance.py`, augmentation in `select/augment.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from flywheel.config import ConfigError


def is_number(value: Any) -> bool:
    """An int or float, not a bool (YAML `true` is not a threshold)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    """A whole number >= 1, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


CATEGORY = "category"  # the column `categories:` writes; a `top` rule may rank `by: category`


@dataclass(frozen=True)
class Category:
    """One category: rows for which `when` (a SQL condition over score columns) holds, first match wins.

    The last category has no `when`: every row no earlier category took. A condition on a column the pool
    lacks (its filter was not run) matches nothing, and the funnel says so.
    """

    name: str
    when: str | None = None
    why: str = ""


QuotaMode = Literal["select", "sample"]


@dataclass(frozen=True)
class Quotas:
    """Shares of the kept rows per category (summing to 1): the largest selection with those proportions.

    `mode: select` (default): rows beyond a category's share are rejected with reason `quota`, worst first
    (`keep_best_by`), so the rows a thin category limits are the worst of the plentiful ones. `mode: sample`:
    no row is rejected; the selection records the shares and the trainer draws each category at its share
    (a thin category repeats instead of the plentiful ones being cut). Both modes record the shares in the
    curated manifest (`category_weights`), which the trainer's loader follows.
    """

    shares: dict[str, float]
    mode: QuotaMode = "select"
    why: str = ""


QUOTA = "quota"  # the reason of rows a recipe's quotas left out
TAXONOMY_CAP = "taxonomy_cap"  # the reason of rows beyond their taxonomy node's cap
TAXONOMY_RESAMPLE = "taxonomy_resample"  # the reason of rows the temperature resampling left out
AUGMENT_COLUMN = "augment_query"  # the query that moved a row into an augmented category (null: not moved)


@dataclass(frozen=True)
class TaxonomyBalance:
    """`taxonomy:` balance the kept rows over the nodes of a hierarchical taxonomy column.

    A row's node is the first `level` parts of its `column` (`animal/dog` at level 1 is `animal`). Inside a
    node rows are ranked by `best_by` (highest first, lowest with `ascending: true`), ties and unscored rows
    in an order seeded by the recipe's `seed` (without `best_by`: a seeded random sample). Then:
    `cap` / `caps` (per node name) keep at most that many rows per node (reason `taxonomy_cap`), and `total`
    resamples to that many rows with node targets proportional to count^(1/temperature) (temperature 1:
    proportional, larger: flatter, so the long tail keeps all its rows and the head gives way), never more than
    a node holds (reason `taxonomy_resample`). Rows with no taxonomy path belong to no node and are left alone.
    """

    column: str = "taxonomy_path"
    level: int = 1
    cap: int | None = None
    caps: dict[str, int] = field(default_factory=dict)
    best_by: str | None = None
    ascending: bool = False
    temperature: float = 1.0
    total: int | None = None
    why: str = ""

    def columns(self) -> list[str]:
        return [self.column, *([self.best_by] if self.best_by else [])]

    def validate(self, where: str) -> None:
        where = f"{where}: taxonomy"
        for param in ("column", "why"):
            if not isinstance(getattr(self, param), str) or (param == "column" and not self.column):
                raise ConfigError(f"{where}.{param} must be text, got {getattr(self, param)!r}")
        if self.best_by is not None and (not isinstance(self.best_by, str) or not self.best_by):
            raise ConfigError(f"{where}.best_by must be a column name, got {self.best_by!r}")
        if not is_count(self.level):
            raise ConfigError(f"{where}.level must be a whole number >= 1, got {self.level!r}")
        for param in ("cap", "total"):
            value = getattr(self, param)
            if value is not None and not is_count(value):
                raise ConfigError(f"{where}.{param} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.caps, dict) or not all(
            isinstance(k, str) and k and is_count(v) for k, v in self.caps.items()
        ):
            raise ConfigError(f"{where}.caps must map node names to whole numbers >= 1, got {self.caps!r}")
        deep = [k for k in self.caps if len(k.split("/")) != self.level]
        if deep:
            raise ConfigError(f"{where}.caps names {deep}, which are not nodes of level {self.level} (a/b is level 2)")
        if not isinstance(self.ascending, bool):
            raise ConfigError(f"{where}.ascending must be true or false, got {self.ascending!r}")
        if not is_number(self.temperature) or self.temperature <= 0:
            raise ConfigError(f"{where}.temperature must be a number > 0, got {self.temperature!r}")
        if self.temperature != 1 and self.total is None:
            raise ConfigError(f"{where}: temperature reshapes a resampled total; set taxonomy.total (rows to keep)")
        if self.cap is None and not self.caps and self.total is None:
            raise ConfigError(f"{where} needs cap, caps or total (it would change nothing)")


@dataclass(frozen=True)
class Augment:
    """`augment:` when `category` holds less than `min_share` of the live rows, fill it from the index.

    Keyword `queries` (text, searched in the caption index and in CLIP's image index when configured) and
    image `images` (files, searched in the image index) retrieve neighbours from the pool's index, the same
    engine and embedders as the pretrain track's expansion. Hits with similarity >= `min_similarity` that
    are still alive after every rule (so they pass the recipe's rules) and sit in another category move into
    `category`, most similar first, until it reaches `min_share`; each carries the query in `augment_query`.
    Reservoirs are searched too and their hits counted in the funnel (not judged by the rules: they are not
    pool rows, so the selection cannot keep them; `flywheel tracks` brings them in through the pretrain track).
    """

    category: str
    min_share: float
    queries: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    k: int = 50
    min_similarity: float = 0.3
    why: str = ""

    def validate(self, where: str, categories: list[str]) -> None:
        where = f"{where}: augment"
        if self.category not in categories:
            raise ConfigError(f"{where}.category {self.category!r} is not one of the recipe's categories {categories}")
        if not is_number(self.min_share) or not 0 < self.min_share < 1:
            raise ConfigError(f"{where}.min_share must be a fraction in (0, 1), got {self.min_share!r}")
        for param in ("queries", "images"):
            value = getattr(self, param)
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigError(f"{where}.{param} must be a list of non-empty texts, got {value!r}")
        if not self.queries and not self.images:
            raise ConfigError(f"{where} needs keyword queries or image files to search with")
        if not is_count(self.k):
            raise ConfigError(f"{where}.k must be a whole number >= 1, got {self.k!r}")
        if not is_number(self.min_similarity) or not -1 <= self.min_similarity <= 1:
            raise ConfigError(f"{where}.min_similarity must be a cosine similarity in [-1, 1]")
