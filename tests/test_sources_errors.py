"""Onboarding failures are clear and final: the right error type, a message that says what
went wrong and where, no pointless retries, no hang, and the source left FAILED.

Real parts throughout: the session dev server, an in-process Mendline worker, the demo
sites and small local HTTP servers scripted per test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.sources_store import SourceStore
from activities.storage import Database
from models.scraper import SeedPage
from models.settings import Settings
from models.sources import (
    OnboardingStep,
    ScrapeStats,
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
    SourceRunInput,
    SourceStatus,
)
from tests.fixtures.fetch.server import Reply, SiteServer
from tests.support.procs import free_port
from workers.demo_server import DemoServer
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow

T = TypeVar("T")

QUICK = 10.0
"""Bound for a failure that must not be retried: one attempt takes well under a second."""

CONNECT_BOUND = 30.0
"""Bound for a connection failure: four attempts with 1 s, 2 s and 4 s between them."""

# 1x1 transparent PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
)


@pytest.fixture
def site() -> Iterator[str]:
    with DemoServer().start() as server:
        yield server.url


@pytest.fixture
def local() -> Iterator[SiteServer]:
    with SiteServer() as server:
        yield server


def source_name() -> str:
    return f"e{uuid.uuid4().hex[:8]}"


def store_for(settings: Settings) -> SourceStore:
    return SourceStore(Database(settings.resolved_database_url))


async def onboarding_failure(
    client: Client, settings: Settings, config: SourceConfig, bound: float = QUICK
) -> tuple[ApplicationError, float]:
    """Onboard ``config``, expect it to fail within ``bound`` seconds.

    Returns:
        The workflow's failure (type and message as the CLI shows them) and how long it took.
    """
    start = time.monotonic()
    handle = await client.start_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=config),
        id=f"source/{config.name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await _within(handle.result(), bound, f"onboarding of {config.url}")
    elapsed = time.monotonic() - start
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), repr(caught.value)
    state = await handle.query("state", result_type=SourceOnboardingState)
    assert state.step == OnboardingStep.FAILED and state.error_type == cause.type
    return cause, elapsed


async def _within(awaitable: Awaitable[T], bound: float, what: str) -> T:
    """``awaitable``'s result; a test failure (not a stuck session) after ``bound`` seconds."""
    try:
        return await asyncio.wait_for(awaitable, bound)
    except TimeoutError:
        pytest.fail(f"{what} did not end within {bound:.0f}s (a hang or endless retries)")


def assert_failed(settings: Settings, name: str, error_type: str) -> None:
    """The source row is FAILED, as `mendline source list` shows it."""
    source = store_for(settings).get_source(name)
    assert source is not None, f"source {name} was never stored"
    assert source.status == SourceStatus.FAILED
    assert source.active_version is None
    events = store_for(settings).events(name)
    reasons = [e.detail.get("reason", "") for e in events if e.kind == "status_changed"]
    assert any(str(r).startswith(error_type) for r in reasons), reasons


async def test_example_value_not_on_the_page(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name, url = source_name(), f"{site}/sites/books/"
    config = SourceConfig(
        name=name,
        url=url,
        examples=[SeedPage(url=url, values={"title": "The Book That Is Not There"})],
    )
    cause, _ = await onboarding_failure(client, settings, config)
    assert cause.type == "ExampleNotFoundError"
    assert "'title'" in cause.message and "The Book That Is Not There" in cause.message
    assert_failed(settings, name, "ExampleNotFoundError")


async def test_a_missing_page_fails_at_once_with_its_status(
    client: Client, settings: Settings, worker: MendlineWorker, local: SiteServer
) -> None:
    name, url = source_name(), local.url("/gone/")
    cause, elapsed = await onboarding_failure(client, settings, SourceConfig(name=name, url=url))
    assert cause.type == "FetchHttpStatusError"
    assert "404" in cause.message and url in cause.message
    # One request, not the fetch retry policy's four.
    assert local.paths().count("/gone/") == 1, local.paths()
    assert elapsed < 5, f"a 404 took {elapsed:.1f}s to fail"
    assert_failed(settings, name, "FetchHttpStatusError")


async def test_a_page_without_repeated_records(
    client: Client, settings: Settings, worker: MendlineWorker, local: SiteServer
) -> None:
    local.routes["/about"] = Reply(
        body="<!doctype html><html><head><title>About</title></head>"
        "<body><p>We are a small shop in Lisbon.</p></body></html>"
    )
    name = source_name()
    cause, _ = await onboarding_failure(
        client, settings, SourceConfig(name=name, url=local.url("/about"))
    )
    assert cause.type == "NoRecordsFoundError"
    assert "tried:" in cause.message
    assert local.paths().count("/about") == 1, local.paths()
    assert_failed(settings, name, "NoRecordsFoundError")


async def test_json_without_a_list_of_records(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    # {"layouts": {"books": 1, ...}}: one object, no array of records.
    name = source_name()
    cause, _ = await onboarding_failure(
        client, settings, SourceConfig(name=name, url=f"{site}/sites/_admin/layout")
    )
    assert cause.type == "NoRecordsFoundError"
    assert "tried:" in cause.message and "json" in cause.message.lower()
    assert_failed(settings, name, "NoRecordsFoundError")


async def test_an_image_is_not_html(
    client: Client, settings: Settings, worker: MendlineWorker, local: SiteServer
) -> None:
    local.routes["/logo.png"] = Reply(body=PNG, content_type="image/png")
    name = source_name()
    cause, _ = await onboarding_failure(
        client, settings, SourceConfig(name=name, url=local.url("/logo.png"))
    )
    assert cause.type == "NotHtmlError"
    assert "image/png" in cause.message
    assert local.paths().count("/logo.png") == 1, local.paths()
    assert_failed(settings, name, "NotHtmlError")


async def test_a_refused_connection_fails_after_the_retry_policy(
    client: Client, settings: Settings, worker: MendlineWorker
) -> None:
    port = free_port()  # nothing listens there: every connection is refused
    name = source_name()
    cause, elapsed = await onboarding_failure(
        client,
        settings,
        SourceConfig(name=name, url=f"http://127.0.0.1:{port}/list"),
        bound=CONNECT_BOUND,
    )
    assert cause.type == "FetchConnectError"
    assert f"127.0.0.1:{port}" in cause.message
    # Retried (1 s + 2 s + 4 s between four attempts), not failed at the first refusal.
    assert elapsed >= 6, f"failed after {elapsed:.1f}s: the connection error was not retried"
    assert_failed(settings, name, "FetchConnectError")


async def test_hostile_deeply_nested_html(
    client: Client, settings: Settings, worker: MendlineWorker, local: SiteServer
) -> None:
    depth = 10_000
    local.routes["/deep"] = Reply(
        body="<!doctype html><html><body>"
        + "<div>" * depth
        + "<p>bottom</p>"
        + "</div>" * depth
        + "</body></html>"
    )
    name = source_name()
    cause, elapsed = await onboarding_failure(
        client, settings, SourceConfig(name=name, url=local.url("/deep"))
    )
    assert cause.type in ("DocumentTooComplexError", "DocumentError"), (cause.type, cause.message)
    assert "nest" in cause.message.lower() or "deep" in cause.message.lower(), cause.message
    assert local.paths().count("/deep") == 1, local.paths()
    assert elapsed < QUICK
    assert_failed(settings, name, cause.type or "")


async def test_a_taken_name_leaves_the_existing_source_alone(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    first: SourceOnboardingState = await client.execute_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=SourceConfig(name=name, url=f"{site}/sites/books/")),
        id=f"source/{name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )
    assert first.step == OnboardingStep.DONE
    again = SourceConfig(name=name, url=f"{site}/sites/news/")
    handle = await client.start_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=again),
        id=f"source/{name}/onboard-again",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await _within(handle.result(), QUICK, "the second onboarding")
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "SourceExistsError"
    assert f"mendline source remove {name}" in cause.message
    source = store_for(settings).get_source(name)
    assert source is not None
    assert source.status == SourceStatus.ACTIVE and source.active_version == 1
    assert source.config.url == f"{site}/sites/books/"


async def run_failure(client: Client, settings: Settings, name: str) -> ApplicationError:
    handle = await client.start_workflow(
        "SourceRun",
        SourceRunInput(source=name),
        id=f"source/{name}/run/{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue,
        result_type=ScrapeStats,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await _within(handle.result(), QUICK, f"the run of {name}")
    # SourceRun fails with the activity's error as the cause of an ActivityError.
    cause: BaseException | None = caught.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    assert isinstance(cause, ApplicationError), repr(caught.value)
    return cause


async def test_run_of_an_unknown_source(
    client: Client, settings: Settings, worker: MendlineWorker
) -> None:
    cause = await run_failure(client, settings, "no-such-source")
    assert cause.type == "SourceNotFoundError"
    assert "'no-such-source'" in cause.message and "mendline source list" in cause.message


async def test_run_of_a_source_without_an_active_scraper(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    store_for(settings).create_source(SourceConfig(name=name, url=f"{site}/sites/books/"))
    cause = await run_failure(client, settings, name)
    assert cause.type == "NoActiveScraperError"
    assert repr(name) in cause.message and "mendline source add" in cause.message
