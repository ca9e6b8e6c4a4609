"""Selection of a pool by a recipe (DuckDB), the funnel report, mix sources and rejected-sample listing."""

from flywheel.select.engine import Selection, select
from flywheel.select.funnel import Funnel, RuleOutcome
from flywheel.select.mix import MixOutcome, read_mix
from flywheel.select.outputs import SelectionExistsError, read_rejected
from flywheel.select.validate import RecipeError

__all__ = [
    "Funnel",
    "MixOutcome",
    "RecipeError",
    "RuleOutcome",
    "Selection",
    "SelectionExistsError",
    "read_mix",
    "read_rejected",
    "select",
]
