"""Attribution and routing of bad cases to the RL, pretrain and prompt tracks."""

from flywheel.routing.evidence import FEATURES, IndexCoverage, gather_evidence, instruction_signals
from flywheel.routing.learned import LearnedRouter, RouterTrainingError, fit_router
from flywheel.routing.policy import Policy
from flywheel.routing.router import MODES, RouteSummary, route_store

__all__ = [
    "FEATURES",
    "MODES",
    "IndexCoverage",
    "LearnedRouter",
    "Policy",
    "RouteSummary",
    "RouterTrainingError",
    "fit_router",
    "gather_evidence",
    "instruction_signals",
    "route_store",
]
