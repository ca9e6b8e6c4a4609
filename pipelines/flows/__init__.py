"""Prefect flows that data engineers run (locally without a server, or against one unchanged)."""

from __future__ import annotations

from typing import Any

from flywheel.errors import UserError


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a failed run, never a user error (wrong path, recipe or config).

    Retrying bad input only repeats the same traceback; the flow must fail at once so a scheduled job
    reports the mistake instead of looking busy.
    """
    try:
        state.result()
    except UserError:
        return False
    except Exception:
        return True
    return True
