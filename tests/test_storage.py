"""Mendline's database on SQLite and PostgreSQL: migrations and idempotent writes."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from activities.storage import (
    MIGRATIONS_DIR,
    Database,
    as_utc,
    current_revision,
    make_engine,
    upsert,
)
from models.db import Base, PipelineRunRow, TaskAttemptRow, TaskCacheRow, TaskOutputRow
from models.runs import ErrorInfo, PipelineRunState, RunStatus, TaskState, TaskStatus

HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
MENDLINE_TABLES = {"pipeline_runs", "task_attempts", "task_outputs", "task_cache"}


def count(db: Database, table: Any, *where: Any) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        )


# --- migrations --------------------------------------------------------------------------------


def test_migrations_create_the_schema_on_an_empty_database(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        db = Database(db_url)
        db.dispose()
        assert current_revision(engine) == HEAD
        assert set(sa.inspect(engine).get_table_names()) >= MENDLINE_TABLES
        # The migrations build exactly the schema the models describe.
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_opening_a_migrated_database_again_changes_nothing(db: Database, db_url: str) -> None:
    db.record_run(PipelineRunState(run_id="r1", pipeline="orders"), "pipeline/orders/r1", "")
    again = Database(db_url)
    try:
        assert current_revision(again.engine) == HEAD
        assert count(again, PipelineRunRow.__table__) == 1
    finally:
        again.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'm.db'}")
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert (tmp_path / "nested" / "dir" / "m.db").is_file()
    finally:
        db.dispose()


# --- runs and attempts -------------------------------------------------------------------------


def test_record_run_inserts_then_updates_one_row(db: Database) -> None:
    started = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    state = PipelineRunState(
        run_id="pipeline/orders/1",
        pipeline="orders",
        pipeline_version="2",
        started_at=started,
        params={"day": "2026-11-20", "when": started},
        tasks={
            "extract": TaskState(name="extract", type="http", status=TaskStatus.RUNNING),
            "clean": TaskState(name="clean", type="transform"),
        },
    )
    db.record_run(state, "pipeline/orders/1", "abc")

    state.status = RunStatus.FAILED
    state.ended_at = started + timedelta(seconds=3)
    state.tasks["extract"].status = TaskStatus.FAILED
    state.tasks["clean"].status = TaskStatus.UPSTREAM_FAILED
    state.error = ErrorInfo(type="HttpStatusError", message="GET /orders: 503")
    db.record_run(state, "pipeline/orders/1", "abc")

    assert count(db, PipelineRunRow.__table__) == 1
    with db.session() as session:
        row = session.get(PipelineRunRow, "pipeline/orders/1")
        assert row is not None
        assert row.status == "FAILED"
        assert row.task_counts == {"FAILED": 1, "UPSTREAM_FAILED": 1}
        assert (row.error_type, row.error_message) == ("HttpStatusError", "GET /orders: 503")
        # Params that are not JSON (a datetime) are stored as their text.
        assert row.params == {"day": "2026-11-20", "when": str(started)}
        assert as_utc(row.started_at) == started
        assert as_utc(row.ended_at) == started + timedelta(seconds=3)
        assert row.spec_sha256 == "abc"


def attempt(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "run_id": "r1",
        "pipeline": "orders",
        "task": "extract",
        "task_type": "http",
        "attempt": 1,
        "status": "RUNNING",
        "started_at": datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
    }
    return {**values, **overrides}


def test_record_attempt_is_idempotent_per_run_task_and_attempt(db: Database) -> None:
    db.record_attempt(**attempt())
    db.record_attempt(**attempt(status="FAILED", error_type="HttpStatusError", duration_ms=12.5))
    db.record_attempt(**attempt(status="FAILED", error_type="HttpStatusError", duration_ms=12.5))
    db.record_attempt(**attempt(attempt=2, status="SUCCEEDED", records_out=3))
    db.record_attempt(**attempt(run_id="r2", status="SUCCEEDED"))

    with db.session() as session:
        rows = session.scalars(
            sa.select(TaskAttemptRow).order_by(TaskAttemptRow.run_id, TaskAttemptRow.attempt)
        ).all()
        assert [(r.run_id, r.attempt, r.status) for r in rows] == [
            ("r1", 1, "FAILED"),
            ("r1", 2, "SUCCEEDED"),
            ("r2", 1, "SUCCEEDED"),
        ]
        assert (rows[0].error_type, rows[0].duration_ms) == ("HttpStatusError", 12.5)
        assert rows[1].records_out == 3
        # Columns left out take their defaults.
        assert (rows[0].mode, rows[0].cached, rows[0].worker) == ("activity", False, "")


# --- large outputs -----------------------------------------------------------------------------


def test_a_large_output_round_trips_and_is_stored_once(db: Database) -> None:
    value = [
        {"id": i, "name": f"customer {i}", "tags": ["a", "b"], "amount": i * 1.5}
        for i in range(60_000)
    ]
    payload = json.dumps(value).encode()
    assert len(payload) > 4_000_000
    digest = hashlib.sha256(payload).hexdigest()

    db.put_output(digest, payload)
    db.put_output(digest, payload)

    assert db.get_output(digest) == value
    assert count(db, TaskOutputRow.__table__) == 1
    with db.session() as session:
        row = session.get(TaskOutputRow, digest)
        assert row is not None
        assert row.size == len(payload)
        assert len(row.body) < len(payload) // 3  # stored compressed


def test_an_unknown_output_hash_raises_key_error_naming_it(db: Database) -> None:
    missing = "0" * 64
    with pytest.raises(KeyError, match=f"no stored task output with sha256 {missing}"):
        db.get_output(missing)


# --- result cache ------------------------------------------------------------------------------


def test_a_cache_entry_is_served_until_it_expires(db: Database) -> None:
    assert db.cache_get("k1") is None
    db.cache_put("k1", "http", {"value": {"rows": 3}}, 3, ttl=60)
    assert db.cache_get("k1") == ({"value": {"rows": 3}}, 3)

    db.cache_put("k2", "http", {"value": 1}, None, ttl=0.001)
    time.sleep(0.01)
    assert db.cache_get("k2") is None


def test_putting_an_expired_entry_again_refreshes_it(db: Database) -> None:
    db.cache_put("k", "sql", {"value": "old"}, 1, ttl=0.001)
    time.sleep(0.01)
    assert db.cache_get("k") is None
    db.cache_put("k", "sql", {"value": "new"}, 2, ttl=60)
    assert db.cache_get("k") == ({"value": "new"}, 2)
    assert count(db, TaskCacheRow.__table__) == 1
    with db.session() as session:
        row = session.get(TaskCacheRow, "k")
        assert row is not None
        expires = as_utc(row.expires_at)
        assert expires is not None
        assert timedelta(seconds=50) < expires - datetime.now(UTC) <= timedelta(seconds=60)


# --- the upsert helper -------------------------------------------------------------------------

COLUMNS = [f"c{i}" for i in range(9)]


@pytest.fixture
def wide(db: Database) -> sa.Table:
    """A ten-column table keyed by ``id``, created in the test database."""
    metadata = sa.MetaData()
    table = sa.Table(
        "wide",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        *(sa.Column(name, sa.Integer) for name in COLUMNS),
    )
    metadata.create_all(db.engine)
    return table


def rows(ids: range, value: int) -> list[dict[str, Any]]:
    return [{"id": i, **dict.fromkeys(COLUMNS, value)} for i in ids]


def test_upsert_of_many_rows_beyond_the_parameter_limit_never_duplicates(
    db: Database, wide: sa.Table
) -> None:
    # 5000 rows x 10 columns = 50 000 bound values, over SQLite's 32 766 per statement.
    with db.engine.begin() as conn:
        upsert(conn, wide, rows(range(5000), 1), ["id"])
    with db.session() as session:
        upsert(session, wide, rows(range(2500, 7500), 2), ["id"])

    assert count(db, wide) == 7500
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count(sa.distinct(wide.c.id)))).scalar_one() == 7500
        per_value = conn.execute(sa.select(wide.c.c0, sa.func.count()).group_by(wide.c.c0))
        assert sorted(tuple(row) for row in per_value) == [(1, 2500), (2, 5000)]
        assert conn.execute(sa.select(wide.c.c8).where(wide.c.id == 4999)).scalar_one() == 2


def test_upsert_updates_only_the_named_columns_or_none(db: Database, wide: sa.Table) -> None:
    with db.engine.begin() as conn:
        upsert(conn, wide, rows(range(3), 1), ["id"])
        upsert(conn, wide, rows(range(3), 2), ["id"], update=["c0"])
        upsert(conn, wide, rows(range(3), 3), ["id"], update=[])
    with db.engine.connect() as conn:
        got = conn.execute(sa.select(wide.c.id, wide.c.c0, wide.c.c1).order_by(wide.c.id)).all()
    assert [tuple(r) for r in got] == [(0, 2, 1), (1, 2, 1), (2, 2, 1)]


def test_upsert_of_nothing_is_a_no_op(db: Database, wide: sa.Table) -> None:
    with db.engine.begin() as conn:
        upsert(conn, wide, [], ["id"])
    assert count(db, wide) == 0


def test_upsert_with_a_key_repeated_in_one_batch_keeps_the_last(
    db: Database, wide: sa.Table
) -> None:
    with db.engine.begin() as conn:
        upsert(conn, wide, [*rows(range(1), 1), *rows(range(1), 2)], ["id"])
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(wide.c.id, wide.c.c0)).all() == [(0, 2)]
