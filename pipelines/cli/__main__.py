"""`python -m pipelines.cli` runs the same CLI as the `flywheel` entry point."""

from pipelines.cli import main

main()
