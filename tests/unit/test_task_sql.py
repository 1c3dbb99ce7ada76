"""The sql handler on real SQLite files and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from activities.tasks import (
    EngineCache,
    SqlConnectionError,
    SqlHandler,
    SqlQueryError,
    TaskConfigError,
    TaskContext,
)

Ctx = Callable[..., TaskContext]


@pytest.fixture
async def sql() -> AsyncIterator[SqlHandler]:
    handler = SqlHandler(EngineCache())
    yield handler
    handler.engines.dispose()


async def run(handler: SqlHandler, ctx: TaskContext, **params: Any) -> Any:
    handler.check_params(params)
    return await handler.run(params, ctx)


async def test_select_returns_json_safe_rows(
    sql: SqlHandler, task_ctx: Ctx, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    ctx = task_ctx()
    await run(
        sql,
        ctx,
        url=url,
        query="CREATE TABLE orders (id INTEGER, amount NUMERIC, note TEXT, raw BLOB)",
    )
    inserted = await run(
        sql,
        ctx,
        url=url,
        query="INSERT INTO orders VALUES (:id, :amount, :note, :raw), (2, 5, NULL, NULL)",
        parameters={
            "id": 1,
            "amount": 12.5,
            "note": "'; DROP TABLE orders; --",
            "raw": b"\x00\x01",
        },
    )
    assert inserted == {"rowcount": 2}
    result = await run(
        sql,
        ctx,
        url=url,
        query="SELECT id, amount, note, raw, date('2026-11-20') AS day FROM orders "
        "WHERE amount > :min ORDER BY id",
        parameters={"min": 0},
    )
    assert result["columns"] == ["id", "amount", "note", "raw", "day"]
    assert result["count"] == 2
    # Bound parameters keep hostile text as data.
    assert result["rows"][0] == {
        "id": 1,
        "amount": 12.5,
        "note": "'; DROP TABLE orders; --",
        "raw": "AAE=",
        "day": "2026-11-20",
    }


async def test_default_database_is_the_context_url(
    sql: SqlHandler, task_ctx: Ctx, tmp_path: Path
) -> None:
    ctx = task_ctx(database_url=f"sqlite:///{tmp_path / 'own.db'}")
    assert await run(sql, ctx, query="SELECT 41 + 1 AS answer") == {
        "rows": [{"answer": 42}],
        "count": 1,
        "columns": ["answer"],
    }
    assert (tmp_path / "own.db").exists()


async def test_max_rows_refuses_larger_results(sql: SqlHandler, task_ctx: Ctx) -> None:
    query = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) SELECT i FROM n"
    ok = await run(sql, task_ctx(), query=query, max_rows=20)
    assert ok["count"] == 20
    with pytest.raises(TaskConfigError, match="more than max_rows=19"):
        await run(sql, task_ctx(), query=query, max_rows=19)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT * FROM no_such_table", "no such table"),
        ("SELEKT 1", "syntax error"),
        ("SELECT :missing", "missing"),
    ],
)
async def test_bad_sql_is_not_retried(
    sql: SqlHandler, task_ctx: Ctx, query: str, message: str
) -> None:
    with pytest.raises(SqlQueryError, match=message) as caught:
        await run(sql, task_ctx(), query=query)
    assert caught.value.non_retryable is True


async def test_unreachable_database_is_retried(
    sql: SqlHandler, task_ctx: Ctx, tmp_path: Path
) -> None:
    # A directory cannot be opened as a database file: SQLite's "unable to open" error.
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(SqlConnectionError) as caught:
        await run(sql, task_ctx(), url=f"sqlite:///{tmp_path / 'dir.db'}", query="SELECT 1")
    assert caught.value.non_retryable is False


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "query"),
        ({"query": "SELECT 1", "parameters": [1]}, "parameters"),
        ({"query": "SELECT 1", "max_rows": 0}, "max_rows"),
        ({"query": "SELECT 1", "url": 5}, "url"),
    ],
)
def test_bad_params_name_the_param(params: dict[str, Any], param: str) -> None:
    with pytest.raises(TaskConfigError, match=param):
        SqlHandler().check_params(params)


async def test_bad_url_is_a_config_error(sql: SqlHandler, task_ctx: Ctx) -> None:
    with pytest.raises(TaskConfigError, match="url"):
        await run(sql, task_ctx(), url="nodb://x", query="SELECT 1")


@pytest.mark.postgres
async def test_postgresql_rows_and_errors(
    sql: SqlHandler, task_ctx: Ctx, pg_url: str, pg_table: str
) -> None:
    ctx = task_ctx()
    await run(
        sql,
        ctx,
        url=pg_url,
        query=f"CREATE TABLE {pg_table} (id int PRIMARY KEY, amount numeric(10,2), at timestamptz, tags jsonb)",
    )
    await run(
        sql,
        ctx,
        url=pg_url,
        query=f"INSERT INTO {pg_table} VALUES (:id, :amount, :at, CAST(:tags AS jsonb))",
        parameters={
            "id": 1,
            "amount": "19.90",
            "at": "2026-11-20T08:00:00+00:00",
            "tags": '{"a": [1]}',
        },
    )
    result = await run(sql, ctx, url=pg_url, query=f"SELECT * FROM {pg_table}")
    assert result["rows"] == [
        {"id": 1, "amount": 19.9, "at": "2026-11-20T08:00:00+00:00", "tags": {"a": [1]}}
    ]
    with pytest.raises(SqlQueryError, match="does not exist"):
        await run(sql, ctx, url=pg_url, query="SELECT * FROM surely_missing_table")
    with pytest.raises(SqlQueryError, match="duplicate key"):
        await run(sql, ctx, url=pg_url, query=f"INSERT INTO {pg_table} (id) VALUES (1)")


@pytest.mark.postgres
async def test_postgresql_connection_refused_is_retried(
    sql: SqlHandler, task_ctx: Ctx, pg_url: str
) -> None:
    url = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"
    with pytest.raises(SqlConnectionError, match="unavailable") as caught:
        await run(sql, task_ctx(), url=url, query="SELECT 1")
    assert caught.value.non_retryable is False
