"""The per-source write lock that serialises read-then-write transactions on one source.

``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL, so two
workers touching the same source queue up instead of both acting on the same stale read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session

from activities.storage import Database

SOURCE_LOCK_CLASS = 0x53524345  # "SRCE": first key of the two-key PostgreSQL advisory lock


def lock_key(source: str) -> int:
    """The second key of the source's advisory lock (a hash of its name)."""
    # A signed 32-bit int, the second key of pg_advisory_xact_lock(int, int).
    return int.from_bytes(hashlib.sha256(source.encode()).digest()[:4], "big", signed=True)


@contextmanager
def locked_session(db: Database, source: str) -> Iterator[Session]:
    """A transaction of ``db`` holding ``source``'s write lock until it ends."""
    with db.session() as session:
        conn = session.connection()
        if conn.dialect.name == "sqlite":
            # pysqlite only opens a transaction at the first write, so reads before it
            # would see a stale snapshot; take the write lock up front (waits out the
            # busy timeout behind another writer).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:cls, :key)"),
                {"cls": SOURCE_LOCK_CLASS, "key": lock_key(source)},
            )
        yield session
