"""Fixtures of the task-handler unit tests: a real local HTTP server, task contexts, databases.

Fixture names carry a ``task_``/``pg_`` prefix so they never shadow the session-wide ones
of ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from activities.tasks import TaskContext
from models.settings import Settings

PG_URL = os.environ.get("MENDLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class _Routes(BaseHTTPRequestHandler):
    """Fixture endpoints; each path exercises one behaviour of the ``http`` task."""

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            # The client may stop reading on purpose (size caps).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    def _json(self, status: int, value: Any, **headers: str) -> None:
        self._send(status, json.dumps(value).encode(), "application/json", **headers)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        match url.path:
            case "/orders":
                orders = [{"id": i, "amount": i * 10.5} for i in range(1, 4)]
                self._json(
                    200,
                    {"orders": orders},
                    ETag='"v1"',
                    Last_Modified="Fri, 20 Nov 2026 08:00:00 GMT",
                )
            case "/list":
                self._json(200, [1, 2, 3, 4])
            case "/text":
                self._send(200, "héllo wörld".encode(), "text/plain; charset=utf-8")
            case "/json-as-text":
                self._send(200, b'{"a": 1}', "text/plain")
            case "/missing":
                self._send(404, b"no such order " + b"x" * 1000, "text/plain")
            case "/huge-error":
                self._send(503, b"maintenance " * 500_000, "text/plain")
            case "/boom":
                self._send(500, b"database exploded", "text/plain")
            case "/busy":
                self._send(429, b"slow down", "text/plain", Retry_After="1")
            case "/teapot":
                self._send(418, b"", "text/plain")
            case "/big":
                size = int(query["n"][0])
                self._send(200, b"a" * size, "text/plain")
            case "/big-unsized":
                # HTTP/1.0 without Content-Length: the body ends when the connection closes,
                # so the client cannot know the size up front.
                size = int(query["n"][0])
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                for _ in range(size // 65536 + 1):
                    try:
                        self.wfile.write(b"b" * 65536)
                    except (BrokenPipeError, ConnectionResetError):
                        return
            case "/bad-json":
                self._send(200, b'{"orders": [1, 2,, 3]}', "application/json")
            case "/redirect":
                self.send_response(302)
                self.send_header("Location", "/orders")
                self.send_header("Content-Length", "0")
                self.end_headers()
            case "/slow":
                time.sleep(float(query.get("s", ["2"])[0]))
                self._json(200, {"slow": True})
            case "/empty":
                self._send(204, b"", "application/json")
            case _:
                self._json(200, {"path": url.path, "query": query, "headers": dict(self.headers)})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        self._json(
            201,
            {
                "method": "POST",
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "body": body,
            },
        )

    do_PUT = do_POST

    def do_HEAD(self) -> None:
        self.do_GET()


@pytest.fixture(scope="session")
def task_http_server() -> Iterator[str]:
    """Base URL of a real HTTP server on 127.0.0.1 serving the fixture routes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Routes)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="task-http-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
async def task_http_client() -> AsyncIterator[httpx.AsyncClient]:
    """The kind of client the worker shares: no client-side retries."""
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(retries=0)) as http:
        yield http


@pytest.fixture
def task_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def task_ctx(
    task_settings: Settings, task_http_client: httpx.AsyncClient
) -> Callable[..., TaskContext]:
    """Build a TaskContext; keyword arguments override fields (attempt, heartbeat, ...)."""

    def make(**overrides: Any) -> TaskContext:
        values: dict[str, Any] = {
            "run_id": "run-1",
            "pipeline": "unit",
            "task": "task",
            "attempt": 1,
            "settings": task_settings,
            "database_url": task_settings.resolved_database_url,
            "http": task_http_client,
        }
        values.update(overrides)
        return TaskContext(**values)

    return make


_pg_reason: list[str | None] = []


def _postgres_unreachable() -> str | None:
    if not _pg_reason:
        engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            _pg_reason.append(None)
        except Exception as exc:  # any failure means: skip, saying why
            _pg_reason.append(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
        finally:
            engine.dispose()
    return _pg_reason[0]


@pytest.fixture
def pg_url() -> str:
    """URL of the test PostgreSQL server; the test is skipped (with the reason) without it."""
    reason = _postgres_unreachable()
    if reason:
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def pg_table(pg_url: str) -> Iterator[str]:
    """A table name unique to this test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
    finally:
        engine.dispose()
