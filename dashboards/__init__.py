"""dashboards: views over a workspace; may import only the core (flywheel), see docs/architecture.md."""
