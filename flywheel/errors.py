"""The one error root of Flywheel, so the CLI can tell a user's mistake from a run that failed.

FlywheelError
  UserError(ValueError)    bad input, config or recipe: the CLI prints one line and exits 2; Prefect does not retry
    MissingInput(FileNotFoundError)   a path the user named (or a step it needs) does not exist
  RunFailed(RuntimeError)  the input was fine but the run failed (lost workers, a model that errored): exit 1

Every exception class of the project derives from UserError or RunFailed. The second base (ValueError,
RuntimeError, FileNotFoundError) keeps `except ValueError` callers and the standard library's meaning working.
Anything else that escapes a command is a bug and keeps its traceback.
"""

from __future__ import annotations


class FlywheelError(Exception):
    """Root of every error Flywheel raises on purpose."""

    exit_code = 1


class UserError(FlywheelError, ValueError):
    """The user's input, config or recipe is wrong; re-running unchanged cannot help (exit 2, no retry)."""

    exit_code = 2


class MissingInput(UserError, FileNotFoundError):
    """A file or folder the user named, or a step that must run first, is missing."""


class RunFailed(FlywheelError, RuntimeError):
    """The input was valid but the run did not finish; a retry may succeed (exit 1)."""

    exit_code = 1
