"""dashboards: the annotators' triage app and the data views, served by `flywheel dashboard` (imports only flywheel).

dashboards.app builds the FastAPI app; dashboards.triage holds the annotator routes, dashboards.views one
module per data view; users, sessions and CSRF are in dashboards.users and dashboards.auth. See
docs/dashboards.md and docs/architecture.md.
"""
