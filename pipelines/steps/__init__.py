"""Pipeline steps: the Ray jobs the CLI and flows call (score, caption, index, search, loop, train)."""
