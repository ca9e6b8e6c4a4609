"""Advisory file locks for the few read-modify-write steps that separate processes may run at once.

Most writers in Flywheel are single (the score driver owns the pool), but some steps are started by users
side by side: two `flywheel score` runs registering sources in one workspace, two `flywheel index` runs
appending to one LanceDB table. Their read-modify-write sections take an exclusive `flock` on a lock file
beside the data, so the second process waits for the first instead of reading a stale state.
`flock` locks are released by the kernel when the process dies, so a crash never leaves a stale lock.

An object store (`s3://`) has no `flock`: there a workspace has one writer at a time (one `score`, `select`,
`index` or `train` writing it), which the user keeps to; `file_lock` on an object path holds nothing.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flywheel.errors import RunFailed
from flywheel.store.fs import ObjectPath


class LockTimeout(RunFailed, TimeoutError):
    """Another process held the lock for longer than the caller was willing to wait."""


@contextmanager
def file_lock(path: str | Path | ObjectPath, *, timeout: float | None = None, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the duration of the block.

    Blocks until the lock is free, or raises LockTimeout after `timeout` seconds. Not re-entrant: a second
    `file_lock` on the same path in the same process opens a new file description and would wait for the
    first, so nested sections must use distinct lock files.
    """
    if isinstance(path, ObjectPath):  # single writer per object-store workspace (module docstring)
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"{path} is held by another process (waited {timeout:.0f}s)") from None
                    time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
