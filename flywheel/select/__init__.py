"""Selection of a pool by a recipe (DuckDB), the funnel report and rejected-sample listing."""

from flywheel.select.engine import Selection, read_rejected, select
from flywheel.select.funnel import Funnel, RuleOutcome

__all__ = ["Funnel", "RuleOutcome", "Selection", "read_rejected", "select"]
