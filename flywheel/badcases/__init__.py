"""Bad-case store: evaluation failures, mined cases and user feedback, with routing and annotator decisions."""

from flywheel.badcases.ingest import FeedbackError, ingest_file
from flywheel.badcases.schema import ROUTABLE_TRACKS, SOURCES, TRACKS, BadCase
from flywheel.badcases.store import BadCaseError, BadCaseStore, IngestResult, Route

__all__ = [
    "ROUTABLE_TRACKS",
    "SOURCES",
    "TRACKS",
    "BadCase",
    "BadCaseError",
    "BadCaseStore",
    "FeedbackError",
    "IngestResult",
    "Route",
    "ingest_file",
]
