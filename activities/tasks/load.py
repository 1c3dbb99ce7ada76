"""The ``load`` task: idempotent upsert of records into a table, keyed by natural key."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Float,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    inspect,
    select,
    tuple_,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from activities.storage import upsert
from activities.tasks.base import HandlerOutput, TaskConfigError, TaskContext, TaskHandler
from activities.tasks.sql import EngineCache, classify_db_error, json_safe

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
RESERVED_COLUMNS = ("data", "loaded_at", "run_id")
_LOOKUP_CHUNK = 500

KeyValue = str | int | float


@dataclass(frozen=True)
class LoadRequest:
    """The checked params of one ``load`` task."""

    table: str
    keys: list[str]
    records: list[dict[str, Any]]
    url: str | None


def _parse(params: Mapping[str, Any]) -> LoadRequest:
    table = params.get("table")
    if not isinstance(table, str) or not IDENTIFIER.match(table):
        raise TaskConfigError(
            "load task param 'table' must be a table name of letters, digits and underscores "
            f"(not starting with a digit, at most 63 characters), got {table!r:.80}"
        )
    key = params.get("key")
    keys = [key] if isinstance(key, str) else key
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise TaskConfigError(
            f"load task needs param 'key' as a field name or a list of field names, got {key!r:.80}"
        )
    for name in keys:
        if not IDENTIFIER.match(name) or name in RESERVED_COLUMNS:
            raise TaskConfigError(
                f"load task key field {name!r} cannot be a column name: use letters, digits and "
                f"underscores, and none of {', '.join(RESERVED_COLUMNS)}"
            )
    if len(set(keys)) != len(keys):
        raise TaskConfigError(f"load task param 'key' lists a field twice: {keys}")
    records = params.get("records")
    if not isinstance(records, list):
        raise TaskConfigError(
            f"load task needs param 'records' as a list of objects, got {type(records).__name__}"
        )
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise TaskConfigError(
                f"load task param 'records': item {index} is a {type(record).__name__}, "
                "not an object"
            )
        for name in keys:
            value = record.get(name)
            if value is None:
                raise TaskConfigError(
                    f"load task: record {index} has no value for key field {name!r}; every "
                    "record needs all key fields"
                )
            if not isinstance(value, str | int | float):
                raise TaskConfigError(
                    f"load task: record {index} key field {name!r} is a "
                    f"{type(value).__name__}; keys must be text or numbers"
                )
    url = params.get("url")
    if url is not None and (not isinstance(url, str) or not url):
        raise TaskConfigError(f"load task param 'url' must be a database URL, got {url!r:.80}")
    return LoadRequest(table=table, keys=list(keys), records=records, url=url)


def _infer_type(values: Sequence[KeyValue]) -> TypeEngine[Any]:
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return BigInteger()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return Float()
    return String()


def _new_table(name: str, keys: list[str], records: list[dict[str, Any]]) -> Table:
    columns = [
        Column(key, _infer_type([r[key] for r in records]), nullable=False, autoincrement=False)
        for key in keys
    ]
    return Table(
        name,
        MetaData(),
        *columns,
        Column("data", JSON, nullable=False),
        Column("loaded_at", DateTime(timezone=True), nullable=False),
        Column("run_id", String, nullable=True),
        PrimaryKeyConstraint(*keys, name=f"pk_{name}"),
    )


def _coerce(value: KeyValue, python_type: type, index: int, key: str) -> KeyValue:
    """Fit a key value to its column's type, so keys from JSON match keys in the table."""
    try:
        if python_type is str:
            return str(value).lower() if isinstance(value, bool) else str(value)
        if python_type is int and not isinstance(value, int):
            number = float(value)
            if not number.is_integer():
                raise ValueError("not a whole number")
            return int(number)
        if python_type is float:
            return float(value)
    except (TypeError, ValueError) as exc:
        raise TaskConfigError(
            f"load task: record {index} key field {key!r} = {value!r:.40} does not fit the "
            f"table's {python_type.__name__} column ({exc})"
        ) from None
    return value


def _column_type(table: Table, key: str) -> type:
    try:
        python_type = table.c[key].type.python_type
    except NotImplementedError:
        return str
    return python_type if python_type in (int, float, str) else str


def _has_unique_key(engine: Engine, table: str, keys: list[str]) -> bool:
    """True when a primary key, unique constraint or unique index covers exactly ``keys``."""
    inspector = inspect(engine)
    wanted = set(keys)
    candidates: list[set[str | None]] = [
        set(inspector.get_pk_constraint(table).get("constrained_columns") or [])
    ]
    candidates += [set(u["column_names"]) for u in inspector.get_unique_constraints(table)]
    candidates += [set(i["column_names"]) for i in inspector.get_indexes(table) if i.get("unique")]
    return any(columns == wanted for columns in candidates)


class LoadHandler(TaskHandler):
    """Upsert records into a table by their natural key; re-running never duplicates rows.

    Params:
        records (list of objects, required): The rows to write.
        table (string, required): Table name (letters, digits, underscores; at most 63
            characters). Created when missing.
        key (string or list of strings, required): Field(s) identifying a record. Every
            record needs a text or number value for each; a record with a key that is
            already in the table replaces that row (the last one wins within one load).
        url (string): SQLAlchemy database URL (``postgresql://`` uses psycopg 3). Default:
            Mendline's own database.

    A new table gets one column per key field (BIGINT when every value is a whole number,
    FLOAT when all are numbers, else text) as its primary key, plus ``data`` (JSON, the whole
    record), ``loaded_at`` (UTC timestamp) and ``run_id`` (the pipeline run that wrote the
    row). An existing table is reused; key values are converted to its key columns' types.
    An empty ``records`` list writes nothing.

    Output:
        ``{"table": name, "count": rows written, "inserted": new keys, "updated": keys that
        already existed}``; ``records_in`` is the number of records given, ``records_out``
        the rows written (records with a repeated key count once).

    Errors:
        ``TaskConfigError`` naming the record index when a record lacks a key field or
        its key does not fit the table. ``SqlQueryError`` (not retried) when the database
        rejects the write, ``SqlConnectionError`` (retried) when it cannot be reached.
    """

    type_name = "load"
    description = "Upsert records into a table by key (idempotent)"

    def __init__(self, engines: EngineCache | None = None) -> None:
        self.engines = engines or EngineCache()

    def check_params(self, params: Mapping[str, Any]) -> None:
        _parse(params)

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        request = _parse(params)
        engine = self.engines.get(request.url or ctx.database_url)
        output = await asyncio.to_thread(self._load, engine, request, ctx.run_id)
        return HandlerOutput(output, records_in=len(request.records), records_out=output["count"])

    def _load(self, engine: Engine, request: LoadRequest, run_id: str) -> dict[str, Any]:
        where = f"load into table {request.table!r}"
        empty = {"table": request.table, "count": 0, "inserted": 0, "updated": 0}
        try:
            if not request.records:
                return empty
            table = self._table(engine, request)
            key_types = {key: _column_type(table, key) for key in request.keys}
            now = datetime.now(UTC)
            rows: dict[tuple[KeyValue, ...], dict[str, Any]] = {}
            for index, record in enumerate(request.records):
                values = {k: _coerce(record[k], key_types[k], index, k) for k in request.keys}
                identity = tuple(values[k] for k in request.keys)
                rows[identity] = {
                    **values,
                    "data": json_safe(record),
                    "loaded_at": now,
                    "run_id": run_id,
                }
            with engine.begin() as conn:
                existing = self._existing_keys(conn, table, request.keys, list(rows))
                upsert(conn, table, list(rows.values()), request.keys)
        except sa_exc.SQLAlchemyError as exc:
            raise classify_db_error(exc, engine.dialect.name, where) from exc
        return {
            "table": request.table,
            "count": len(rows),
            "inserted": len(rows) - len(existing),
            "updated": len(existing),
        }

    @staticmethod
    def _table(engine: Engine, request: LoadRequest) -> Table:
        """The target table, created when missing, checked to have the key columns."""
        if not inspect(engine).has_table(request.table):
            table = _new_table(request.table, request.keys, request.records)
            try:
                with engine.begin() as conn:
                    table.create(conn, checkfirst=True)
            except sa_exc.SQLAlchemyError:
                # Another worker may have created it between the check and the create.
                if not inspect(engine).has_table(request.table):
                    raise
            else:
                return table
        with engine.connect() as conn:
            table = Table(request.table, MetaData(), autoload_with=conn)
        missing = [c for c in (*request.keys, *RESERVED_COLUMNS) if c not in table.c]
        if missing:
            raise TaskConfigError(
                f"load task: table {request.table!r} already exists without columns {missing}; "
                "choose another table, or the key it was created with "
                f"(it has {', '.join(table.c.keys())})"
            )
        if not _has_unique_key(engine, request.table, request.keys):
            raise TaskConfigError(
                f"load task: table {request.table!r} has no primary key or unique constraint "
                f"on exactly {request.keys}, so rows cannot be upserted by that key; add one "
                "or choose another table"
            )
        return table

    @staticmethod
    def _existing_keys(
        conn: Connection, table: Table, keys: list[str], wanted: list[tuple[KeyValue, ...]]
    ) -> set[tuple[Any, ...]]:
        columns = [table.c[k] for k in keys]
        found: set[tuple[Any, ...]] = set()
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            if len(columns) == 1:
                where = columns[0].in_([k[0] for k in chunk])
            else:
                where = tuple_(*columns).in_(chunk)
            found.update(tuple(row) for row in conn.execute(select(*columns).where(where)))
        return found
