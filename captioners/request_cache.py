"""Persistent cache of finished endpoint requests (SQLite), so a re-run never re-sends a finished request.

Keyed by `VlmRequest.key` (model, sampling, prompt, token budget, image hash). Only answers
are cached, never errors, so a failed request is retried by the next run. SQLite in WAL mode
with a busy timeout lets several Ray actors on one machine share the file; the cache lives
in the workspace (`WORKSPACE/cache/openai/requests.sqlite`), next to the data it produced.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class RequestCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "output_tokens INTEGER NOT NULL, created TEXT DEFAULT CURRENT_TIMESTAMP)"
        )

    def get(self, key: str) -> tuple[str, int] | None:
        with self._lock:
            row = self._con.execute("SELECT text, output_tokens FROM replies WHERE key = ?", (key,)).fetchone()
        return (str(row[0]), int(row[1])) if row else None

    def put(self, key: str, text: str, output_tokens: int) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO replies (key, text, output_tokens) VALUES (?, ?, ?)", (key, text, output_tokens)
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._con.close()
