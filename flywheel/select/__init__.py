"""Selection of a pool by a recipe (DuckDB), the funnel report, mix sources and rejected-sample listing."""

from flywheel.select.engine import Selection, read_rejected, select
from flywheel.select.funnel import Funnel, RuleOutcome
from flywheel.select.mix import MixOutcome, read_mix

__all__ = ["Funnel", "MixOutcome", "RuleOutcome", "Selection", "read_mix", "read_rejected", "select"]
