"""Dashboard users: names, roles and argon2 password hashes in WORKSPACE/dashboards/users.sqlite.

Users live in the workspace (not in a server) so a workspace copied to another machine keeps its logins.
Passwords are hashed with argon2id (argon2-cffi, a maintained library); a hash is re-computed with current
parameters when they change (`check_needs_rehash`), so old hashes upgrade themselves at the next login.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from flywheel.errors import UserError
from flywheel.workspace import Workspace

ROLES = ("annotator", "engineer", "admin")  # each role may do everything the ones before it may
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('annotator', 'engineer', 'admin')),
    hash       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


class AccountError(UserError):
    """Bad user name, role or password; the message says what to fix."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def may(self, role: str) -> bool:
        """True when this user's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def dashboards_dir(ws_root: Path) -> Path:
    return Workspace(ws_root).dashboards_dir


class UserStore:
    def __init__(self, ws_root: Path) -> None:
        self.dir = dashboards_dir(ws_root)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "users.sqlite"
        self.hasher = PasswordHasher()
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30.0)
        try:
            con.row_factory = sqlite3.Row
            yield con
            con.commit()
        finally:
            con.close()

    def add(self, name: str, role: str, password: str, *, replace: bool = False) -> User:
        if not _NAME.match(name):
            raise AccountError(f"user name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
        if role not in ROLES:
            raise AccountError(f"role {role!r} unknown; choose one of {ROLES}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password must have at least {MIN_PASSWORD} characters")
        digest = self.hasher.hash(password)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as con:
            if not replace and con.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"user {name!r} exists; pass --replace to change the role or password")
            con.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?)", (name, role, digest, at))
        return User(name, role)

    def get(self, name: str) -> User | None:
        with self._connect() as con:
            row = con.execute("SELECT name, role FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else User(row["name"], row["role"])

    def list(self) -> list[User]:
        with self._connect() as con:
            return [User(r["name"], r["role"]) for r in con.execute("SELECT name, role FROM users ORDER BY name")]

    def verify(self, name: str, password: str) -> User | None:
        """The user when the password matches, else None (same work either way, so names do not leak)."""
        with self._connect() as con:
            row = con.execute("SELECT name, role, hash FROM users WHERE name = ?", (name,)).fetchone()
        digest = row["hash"] if row else self.hasher.hash(secrets.token_hex(8))
        try:
            self.hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if self.hasher.check_needs_rehash(digest):
            with self._connect() as con:
                con.execute("UPDATE users SET hash = ? WHERE name = ?", (self.hasher.hash(password), name))
        return User(row["name"], row["role"])


def session_secret(ws_root: Path) -> bytes:
    """The key that signs session cookies: created once per workspace, readable by its owner only."""
    path = dashboards_dir(ws_root) / "secret.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_bytes()
