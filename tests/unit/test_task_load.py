"""The load handler: idempotent upserts on real SQLite files and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from activities.tasks import (
    EngineCache,
    HandlerOutput,
    LoadHandler,
    TaskConfigError,
    TaskContext,
)

Ctx = Callable[..., TaskContext]

ORDERS: list[dict[str, Any]] = [
    {"id": 1, "customer": "ada", "amount": 12.5},
    {"id": 2, "customer": "bob", "amount": 3},
    {"id": 3, "customer": "cy", "amount": 7.25, "tags": ["new"]},
]


@pytest.fixture
async def loader() -> AsyncIterator[LoadHandler]:
    handler = LoadHandler(EngineCache())
    yield handler
    handler.engines.dispose()


async def load(handler: LoadHandler, ctx: TaskContext, **params: Any) -> HandlerOutput:
    handler.check_params(params)
    result = await handler.run(params, ctx)
    assert isinstance(result, HandlerOutput)
    return result


def rows(url: str, table: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            found = [dict(r) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings()]
    finally:
        engine.dispose()
    for row in found:
        # Raw SQL returns SQLite's JSON column as text; PostgreSQL's arrives decoded.
        if isinstance(row["data"], str):
            row["data"] = json.loads(row["data"])
    return found


async def check_rerun_is_idempotent(loader: LoadHandler, ctx: Ctx, url: str, table: str) -> None:
    first = await load(loader, ctx(run_id="run-1"), records=ORDERS, table=table, key="id", url=url)
    assert first.value == {"table": table, "count": 3, "inserted": 3, "updated": 0}
    assert (first.records_in, first.records_out) == (3, 3)

    again = await load(loader, ctx(run_id="run-2"), records=ORDERS, table=table, key="id", url=url)
    assert again.value == {"table": table, "count": 3, "inserted": 0, "updated": 3}
    stored = rows(url, table)
    assert len(stored) == 3, "re-running the same load must not duplicate rows"
    assert {r["run_id"] for r in stored} == {"run-2"}

    changed = [
        {"id": 2, "customer": "bob", "amount": 99},
        {"id": 4, "customer": "dee", "amount": 1},
    ]
    third = await load(loader, ctx(run_id="run-3"), records=changed, table=table, key="id", url=url)
    assert third.value == {"table": table, "count": 2, "inserted": 1, "updated": 1}
    by_id = {r["id"]: r for r in rows(url, table)}
    assert sorted(by_id) == [1, 2, 3, 4]
    assert by_id[2]["data"] == {"id": 2, "customer": "bob", "amount": 99}
    assert by_id[3]["data"]["tags"] == ["new"]
    assert by_id[3]["run_id"] == "run-2"
    assert by_id[4]["loaded_at"] is not None


async def test_sqlite_load_is_idempotent(
    loader: LoadHandler, task_ctx: Ctx, tmp_path: Path
) -> None:
    await check_rerun_is_idempotent(loader, task_ctx, f"sqlite:///{tmp_path / 'wh.db'}", "orders")


@pytest.mark.postgres
async def test_postgresql_load_is_idempotent(
    loader: LoadHandler, task_ctx: Ctx, pg_url: str, pg_table: str
) -> None:
    await check_rerun_is_idempotent(loader, task_ctx, pg_url, pg_table)


@pytest.mark.postgres
async def test_postgresql_composite_text_key_and_duplicates_in_one_batch(
    loader: LoadHandler, task_ctx: Ctx, pg_url: str, pg_table: str
) -> None:
    records = [
        {"shop": "north", "sku": "A-1", "qty": 1},
        {"shop": "south", "sku": "A-1", "qty": 2},
        {"shop": "north", "sku": "A-1", "qty": 5},  # same key again: the last one wins
    ]
    params = {"records": records, "table": pg_table, "key": ["shop", "sku"], "url": pg_url}
    result = await load(loader, task_ctx(), **params)
    assert result.value == {"table": pg_table, "count": 2, "inserted": 2, "updated": 0}
    assert (result.records_in, result.records_out) == (3, 2)
    again = await load(loader, task_ctx(), **params)
    assert again.value["updated"] == 2
    stored = {(r["shop"], r["sku"]): r["data"]["qty"] for r in rows(pg_url, pg_table)}
    assert stored == {("north", "A-1"): 5, ("south", "A-1"): 2}


async def test_default_database_and_key_types(
    loader: LoadHandler, task_ctx: Ctx, tmp_path: Path
) -> None:
    ctx = task_ctx(database_url=f"sqlite:///{tmp_path / 'own.db'}")
    await load(loader, ctx, records=[{"code": 10, "v": 1}], table="codes", key="code")
    # The column was created as an integer, so the text "10" is the same key.
    result = await load(loader, ctx, records=[{"code": "10", "v": 2}], table="codes", key="code")
    assert result.value["updated"] == 1
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'own.db'}")
    try:
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns("codes")}
    finally:
        engine.dispose()
    assert set(columns) == {"code", "data", "loaded_at", "run_id"}
    assert isinstance(columns["code"]["type"], sa.BigInteger | sa.Integer)
    with pytest.raises(TaskConfigError, match="record 0 key field 'code' = 'ten' does not fit"):
        await load(loader, ctx, records=[{"code": "ten"}], table="codes", key="code")


async def test_existing_table_without_the_key_is_refused(
    loader: LoadHandler, task_ctx: Ctx, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    await load(loader, task_ctx(), records=ORDERS, table="orders", key="id", url=url)
    with pytest.raises(TaskConfigError, match=r"already exists without columns \['customer'\]"):
        await load(loader, task_ctx(), records=ORDERS, table="orders", key="customer", url=url)


async def test_existing_table_without_unique_key_is_refused(
    loader: LoadHandler, task_ctx: Ctx, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE loose (id INTEGER, data JSON, loaded_at TIMESTAMP, run_id TEXT)")
        )
    engine.dispose()
    with pytest.raises(
        TaskConfigError,
        match=r"'loose' has no primary key or unique constraint on exactly \['id'\]",
    ):
        await load(loader, task_ctx(), records=ORDERS, table="loose", key="id", url=url)


async def test_empty_records_write_nothing(
    loader: LoadHandler, task_ctx: Ctx, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    result = await load(loader, task_ctx(), records=[], table="orders", key="id", url=url)
    assert result.value == {"table": "orders", "count": 0, "inserted": 0, "updated": 0}


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({"records": ORDERS, "table": "orders; DROP TABLE x", "key": "id"}, "param 'table'"),
        ({"records": ORDERS, "table": "1orders", "key": "id"}, "param 'table'"),
        ({"records": ORDERS, "table": "orders"}, "param 'key'"),
        ({"records": ORDERS, "table": "orders", "key": ["id", "id"]}, "twice"),
        ({"records": ORDERS, "table": "orders", "key": "data"}, "none of data, loaded_at, run_id"),
        (
            {"records": [{"id": 1}, {"name": "x"}], "table": "t", "key": "id"},
            "record 1 has no value for key field 'id'",
        ),
        (
            {"records": [{"id": [1]}], "table": "t", "key": "id"},
            "record 0 key field 'id' is a list",
        ),
        ({"records": [1], "table": "t", "key": "id"}, "item 0 is a int"),
        ({"records": "x", "table": "t", "key": "id"}, "param 'records'"),
    ],
)
def test_bad_params_name_the_problem(params: dict[str, Any], complaint: str) -> None:
    with pytest.raises(TaskConfigError, match=complaint):
        LoadHandler().check_params(params)
