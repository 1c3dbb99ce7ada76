"""The ``sql`` task: one parameterised statement against a SQLAlchemy database.

Errors (beyond those in :mod:`activities.tasks.base`):
    SqlQueryError        the database rejected the statement: bad SQL, missing table or
                         column, constraint violation, missing bound parameter (never retried)
    SqlConnectionError   the database could not be reached or the connection broke (retried)
"""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc

from activities.storage import make_engine
from activities.tasks.base import TaskConfigError, TaskContext, TaskError, TaskHandler

DEFAULT_MAX_ROWS = 100_000

# SQLite reports bad SQL as OperationalError; these messages mean the statement itself is
# wrong, so retrying cannot help.
_SQLITE_PERMANENT = (
    "no such table",
    "no such column",
    "syntax error",
    "incomplete input",
    "already exists",
    "has no column",
    "no such function",
    "ambiguous column",
    "values for",
    "readonly database",
    "on conflict clause",
    "constraint failed",
    "datatype mismatch",
)


class SqlQueryError(TaskError):
    """The database rejected the statement (never retried)."""

    type_name = "SqlQueryError"
    non_retryable = True


class SqlConnectionError(TaskError):
    """The database was unreachable or the connection failed (retried)."""

    type_name = "SqlConnectionError"


class EngineCache:
    """One SQLAlchemy engine (and its pool) per database URL, made on first use."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> Engine:
        """The engine for ``url``.

        Raises:
            TaskConfigError: The URL is malformed or names a driver that is not installed.
        """
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                try:
                    engine = make_engine(url)
                except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
                    raise TaskConfigError(
                        f"param 'url' is not a usable SQLAlchemy URL ({exc}); use e.g. "
                        "'sqlite:///path/to.db' or 'postgresql://user@host/db'"
                    ) from None
                self._engines[url] = engine
            return engine

    def dispose(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


def json_safe(value: Any) -> Any:
    """Convert a database value to JSON.

    datetime, date and time become ISO strings; ``Decimal`` becomes an int when whole, else
    a float; bytes become base64 text; UUIDs text; intervals seconds; lists and dicts
    (JSON columns) are converted item by item.
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)


def classify_db_error(exc: sa_exc.SQLAlchemyError, dialect: str, what: str) -> TaskError:
    """Turn a SQLAlchemy error into a retryable or a permanent task error.

    Args:
        exc: The error SQLAlchemy raised.
        dialect: The engine's dialect name (SQLite reports bad SQL as OperationalError).
        what: Where it happened, for the message.
    """
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return SqlConnectionError(f"{what}: lost the database connection: {message}")
    if isinstance(exc, sa_exc.OperationalError):
        lowered = message.lower()
        if dialect == "sqlite" and any(p in lowered for p in _SQLITE_PERMANENT):
            return SqlQueryError(f"{what}: {message}")
        return SqlConnectionError(f"{what}: database unavailable: {message}; it will be retried")
    if isinstance(exc, sa_exc.InterfaceError | sa_exc.InternalError | sa_exc.TimeoutError):
        return SqlConnectionError(f"{what}: {message}; it will be retried")
    return SqlQueryError(f"{what}: {message}")


def _parse(params: Mapping[str, Any]) -> tuple[str, dict[str, Any], int, str | None]:
    query = params.get("query")
    if not isinstance(query, str) or not query.strip():
        raise TaskConfigError(
            "sql task needs param 'query' as SQL text; pass values through 'parameters' "
            "(':name' placeholders), never by formatting them into the text"
        )
    parameters = params.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise TaskConfigError(
            f"sql task param 'parameters' must map placeholder names to values, "
            f"got {parameters!r:.80}"
        )
    max_rows = params.get("max_rows", DEFAULT_MAX_ROWS)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise TaskConfigError(
            f"sql task param 'max_rows' must be a positive integer, got {max_rows!r:.40}"
        )
    url = params.get("url")
    if url is not None and (not isinstance(url, str) or not url):
        raise TaskConfigError(f"sql task param 'url' must be a database URL, got {url!r:.80}")
    return query, dict(parameters), max_rows, url


class SqlHandler(TaskHandler):
    """Run one SQL statement with bound parameters and return its rows or row count.

    Params:
        query (string, required): SQL text; values go in as ``:name`` placeholders.
        parameters (mapping): Values of the placeholders, bound by the driver (never
            formatted into the SQL).
        url (string): SQLAlchemy database URL, e.g. ``sqlite:///data/shop.db`` or
            ``postgresql://user@host/db`` (psycopg 3 is used). Default: Mendline's own
            database.
        max_rows (int): Most rows a query may return. Default 100000; more fails the task
            (not retried) — add a ``LIMIT`` or raise it.

    Output:
        For a statement that returns rows: ``{"rows": [{column: value}], "count": n,
        "columns": [names]}`` with values made JSON-safe (dates and times as ISO strings,
        decimals as numbers, bytes as base64). Otherwise ``{"rowcount": n}``, the rows
        affected. The statement runs in its own transaction, committed on success.

    Errors:
        ``SqlQueryError`` (not retried) when the database rejects the statement: bad SQL,
        unknown table or column, constraint violation, missing parameter.
        ``SqlConnectionError`` (retried) when the database cannot be reached.
    """

    type_name = "sql"
    description = "Run a parameterised SQL statement; output rows or row count"

    def __init__(self, engines: EngineCache | None = None) -> None:
        self.engines = engines or EngineCache()

    def check_params(self, params: Mapping[str, Any]) -> None:
        _parse(params)

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        query, parameters, max_rows, url = _parse(params)
        engine = self.engines.get(url or ctx.database_url)
        return await asyncio.to_thread(self._execute, engine, query, parameters, max_rows)

    @staticmethod
    def _execute(
        engine: Engine, query: str, parameters: dict[str, Any], max_rows: int
    ) -> dict[str, Any]:
        where = f"sql task on {engine.url.render_as_string(hide_password=True)}"
        try:
            with engine.begin() as conn:
                result = conn.execute(text(query), parameters)
                if not result.returns_rows:
                    return {"rowcount": result.rowcount}
                columns = list(result.keys())
                rows = result.fetchmany(max_rows + 1)
                if len(rows) > max_rows:
                    raise TaskConfigError(
                        f"{where}: the query returned more than max_rows={max_rows:,} rows; "
                        "add a LIMIT or raise param 'max_rows'"
                    )
        except sa_exc.SQLAlchemyError as exc:
            raise classify_db_error(exc, engine.dialect.name, where) from exc
        records = [{c: json_safe(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        return {"rows": records, "count": len(records), "columns": columns}
