"""Mendline's database: engine set-up, migrations, and the idempotent writes activities make.

SQLite (the default) runs in WAL mode with a busy timeout so several worker processes can
share one file; PostgreSQL is used when ``MENDLINE_DATABASE_URL`` points at one. Every write
is an upsert on a natural key, so a retried activity never duplicates a row.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

import migrations
import models.db_incidents  # registers the incidents tables on Base.metadata
import models.db_remediation  # registers the model registry and audit log tables
import models.db_sources  # noqa: F401  (registers the sources tables on Base.metadata)
from models.db import PipelineRunRow, TaskAttemptRow, TaskCacheRow, TaskOutputRow
from models.runs import PipelineRunState

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(migrations.__file__).parent


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; treat them as the UTC they were written as."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite, create the folder and turn on WAL and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; plain postgresql:// would look for psycopg2.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True)


MIGRATION_LOCK_ID = 0x4D454E44  # "MEND": PostgreSQL advisory lock key for migrations


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (idempotent).

    Several workers may start at once on a fresh database: migrations run under a lock
    (a PostgreSQL advisory lock, a file lock beside a SQLite file) and Alembic re-reads the
    current revision inside it, so exactly one process migrates and the others find it done.
    """
    # Alembic is imported here, not at module level: it costs a quarter second of every
    # CLI command's start-up and only migrations need it.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with _migration_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None for an empty database."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@functools.lru_cache(maxsize=256)
def _upsert_statement(
    dialect: str, table: Table, keys: tuple[str, ...], update: tuple[str, ...]
) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE/NOTHING`` for one row, built once per shape."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    stmt = insert(table)
    if update:
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
        )
    return stmt.on_conflict_do_nothing(index_elements=list(keys))


def upsert(
    conn: Connection | Session,
    table: Table,
    values: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """Insert rows, or update the columns in ``update`` where the ``keys`` already exist.

    Uses ``ON CONFLICT`` on SQLite and PostgreSQL; on other databases it falls back to a
    select-then-write inside the caller's transaction.
    """
    if not values:
        return
    # A key repeated within one batch: the last row wins on every database (PostgreSQL
    # would otherwise refuse to update the same row twice in one statement).
    values = list({tuple(row[k] for k in keys): row for row in values}.values())
    columns = list(values[0])
    update = [c for c in (update if update is not None else columns) if c not in keys]
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    dialect = bind.dialect.name
    if dialect in ("sqlite", "postgresql"):
        # One single-row statement executed with every row: SQLAlchemy compiles it once and
        # caches it (a multi-row VALUES statement is a new statement for every batch size,
        # and compiling it cost more than the database's work); the driver batches the rows.
        conn.execute(_upsert_statement(dialect, table, tuple(keys), tuple(update)), values)
        return
    for row in values:
        where = [table.c[k] == row[k] for k in keys]
        found = conn.execute(select(table.c[keys[0]]).where(*where)).first()
        if found is None:
            conn.execute(table.insert().values(**row))
        elif update:
            conn.execute(table.update().where(*where).values({c: row[c] for c in update}))


class Database:
    """Mendline's database handle, shared by the activities of one worker process."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            upgrade_database(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction, committed on success and rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # --- pipeline runs -------------------------------------------------------------------

    def record_run(self, state: PipelineRunState, workflow_id: str, spec_sha256: str) -> None:
        """Insert or update a run's row from its current state."""
        row = {
            "run_id": state.run_id,
            "workflow_id": workflow_id,
            "pipeline": state.pipeline,
            "pipeline_version": state.pipeline_version,
            "spec_sha256": spec_sha256,
            "status": state.status.value,
            "params": _jsonable(state.params),
            "outputs": _jsonable(state.outputs),
            "task_counts": state.counts(),
            "error_type": state.error.type if state.error else None,
            "error_message": state.error.message if state.error else None,
            "started_at": state.started_at,
            "ended_at": state.ended_at,
            "updated_at": utcnow(),
        }
        with self.session() as session:
            upsert(session, PipelineRunRow.__table__, [row], ["run_id"])  # type: ignore[arg-type]

    # --- telemetry -----------------------------------------------------------------------

    def record_attempt(self, **values: Any) -> None:
        """Insert or update one task attempt (keyed by run, task and attempt number)."""
        self.record_attempts([values])

    def record_attempts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or update task attempts in one transaction (the last row of a key wins)."""
        with self.session() as session:
            upsert(
                session,
                TaskAttemptRow.__table__,  # type: ignore[arg-type]
                rows,
                ["run_id", "task", "attempt"],
            )

    # --- large outputs -------------------------------------------------------------------

    def put_output(self, sha256: str, payload: bytes) -> None:
        """Store a JSON payload under its SHA-256 (no-op when already stored)."""
        row = {
            "sha256": sha256,
            "size": len(payload),
            "body": zlib.compress(payload, 6),
            "created_at": utcnow(),
        }
        with self.session() as session:
            upsert(session, TaskOutputRow.__table__, [row], ["sha256"], update=[])  # type: ignore[arg-type]

    def get_output(self, sha256: str) -> Any:
        """Load a stored output.

        Raises:
            KeyError: No output with that hash is stored.
        """
        with self.session() as session:
            body = session.scalar(select(TaskOutputRow.body).where(TaskOutputRow.sha256 == sha256))
        if body is None:
            raise KeyError(f"no stored task output with sha256 {sha256}")
        return json.loads(zlib.decompress(body))

    # --- result cache --------------------------------------------------------------------

    def cache_get(self, key: str) -> tuple[dict[str, Any], int | None] | None:
        """Return ``(output, records_out)`` for a live cache entry, else None."""
        with self.session() as session:
            row = session.get(TaskCacheRow, key)
            if row is None:
                return None
            expires = as_utc(row.expires_at)
            if expires is None or expires <= utcnow():
                return None
            return row.output, row.records_out

    def cache_put(
        self, key: str, task_type: str, output: dict[str, Any], records_out: int | None, ttl: float
    ) -> None:
        """Store or refresh a cache entry that expires after ``ttl`` seconds."""
        now = utcnow()
        row = {
            "cache_key": key,
            "task_type": task_type,
            "output": output,
            "records_out": records_out,
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl),
        }
        with self.session() as session:
            upsert(session, TaskCacheRow.__table__, [row], ["cache_key"])  # type: ignore[arg-type]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
