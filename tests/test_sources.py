"""Sources end to end: onboarding and scrape runs on the real server, worker, database and the
bundled demo sites — scout, build, validate in staging, promote (with and without a person)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError

from activities.sources_store import SourceStore
from activities.storage import Database
from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus
from models.db_sources import ScraperVersionRow, SilverRecordRow
from models.runs import PipelineRunInput, PipelineRunState, RunStatus
from models.settings import Settings
from models.sources import (
    OnboardingStep,
    ScrapeStats,
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
    SourceRunInput,
)
from workers.demo_server import DemoServer
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def site() -> Iterator[str]:
    with DemoServer().start() as server:
        yield server.url


def source_name() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


async def start_onboarding(
    client: Client, settings: Settings, config: SourceConfig
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=config, supervise=False),
        id=f"source/{config.name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )


async def onboard(
    client: Client, settings: Settings, config: SourceConfig
) -> SourceOnboardingState:
    handle = await start_onboarding(client, settings, config)
    result: SourceOnboardingState = await handle.result()
    return result


async def scrape(client: Client, settings: Settings, name: str) -> ScrapeStats:
    result: ScrapeStats = await client.execute_workflow(
        "SourceRun",
        SourceRunInput(source=name),
        id=f"source/{name}/run/{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue,
        result_type=ScrapeStats,
    )
    return result


def store_for(settings: Settings) -> SourceStore:
    return SourceStore(Database(settings.resolved_database_url))


async def test_onboard_html_listing_then_runs_are_idempotent(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    state = await onboard(client, settings, SourceConfig(name=name, url=f"{site}/sites/books/"))
    assert state.step == OnboardingStep.DONE and state.active and state.version == 1
    assert state.report is not None and state.report.passed
    assert state.report.total_records == 24  # the 24 books, not the sidebar's bestsellers
    assert state.rendered is False

    first = await scrape(client, settings, name)
    assert first.records == 24 and first.inserted == 24 and first.duplicate_keys == 0
    second = await scrape(client, settings, name)
    assert second.inserted == 0 and second.unchanged == 24

    db = Database(settings.resolved_database_url)
    with db.session() as session:
        silver = session.scalar(
            select(func.count()).select_from(SilverRecordRow).where(SilverRecordRow.source == name)
        )
        versions = session.scalar(
            select(func.count())
            .select_from(ScraperVersionRow)
            .where(ScraperVersionRow.source == name)
        )
    db.dispose()
    assert silver == 24 and versions == 1
    records = store_for(settings).records(name, second.run_id)
    assert len(records) == 24 and all(r.get("_url", "").startswith(site) for r in records)


async def test_json_api_with_pagination(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    state = await onboard(
        client,
        settings,
        SourceConfig(name=name, url=f"{site}/sites/catalog/api/products", max_pages=5),
    )
    assert state.blueprint is not None and state.blueprint.kind == "json"
    stats = await scrape(client, settings, name)
    assert stats.records == 30 and stats.pages == 3


async def test_script_built_page_is_rendered_with_the_browser(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    state = await onboard(client, settings, SourceConfig(name=name, url=f"{site}/sites/spa/"))
    assert state.rendered is True
    assert state.report is not None and state.report.total_records > 0
    stats = await scrape(client, settings, name)
    assert stats.records == state.report.total_records


async def test_duplicate_source_name_is_refused(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    await onboard(client, settings, SourceConfig(name=name, url=f"{site}/sites/books/"))
    second = await client.start_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=SourceConfig(name=name, url=f"{site}/sites/news/")),
        id=f"source/{name}/onboard-again",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await second.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "SourceExistsError"
    assert name in cause.message


async def test_private_addresses_are_refused_unless_allowed(
    client: Client, settings: Settings, site: str
) -> None:
    from workers.worker import create_worker

    guarded = settings.model_copy(update={"allow_private_networks": False, "allowed_hosts": ""})
    async with create_worker(client, guarded):
        handle = await start_onboarding(
            client, guarded, SourceConfig(name=source_name(), url=f"{site}/sites/books/")
        )
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "UrlNotAllowedError"
    assert "MENDLINE_ALLOW" in cause.message


async def wait_for_pending(handle: WorkflowHandle[Any, Any]) -> ApprovalStatus:
    for _ in range(300):
        status: ApprovalStatus = await handle.query("approval", result_type=ApprovalStatus)
        if status.pending is not None:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError("onboarding never asked for approval")


async def test_promotion_waits_for_a_valid_approval(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    handle = await start_onboarding(
        client, settings, SourceConfig(name=name, url=f"{site}/sites/books/", require_approval=True)
    )
    status = await wait_for_pending(handle)
    assert status.pending is not None
    request_id = status.pending.request_id
    assert request_id.startswith(f"source/{name}/onboard#")
    state = await handle.query("state", result_type=SourceOnboardingState)
    assert state.step == OnboardingStep.AWAITING_APPROVAL and not state.active

    # Found by the search attribute, as `mendline approvals list` does.
    found = []
    for _ in range(40):
        found = [
            w.id
            async for w in client.list_workflows(
                f"MendlinePendingApproval = true AND WorkflowId = '{handle.id}'"
            )
        ]
        if found:
            break
        await asyncio.sleep(0.25)
    assert found == [handle.id]

    # Malformed or mistaken decisions are refused by the validator, before history.
    for bad, why in [
        (
            ApprovalDecision(request_id="source/x/onboard#v9", approver="alice"),
            "not the pending one",
        ),
        (
            ApprovalDecision(request_id=request_id, approver="alice", params={"rm": "-rf"}),
            "cannot be set",
        ),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("approve", bad, result_type=ApprovalOutcome)
        assert why in str(refused.value.cause)

    outcome = await handle.execute_update(
        "approve",
        ApprovalDecision(request_id=request_id, approver="alice", reason="ok"),
        result_type=ApprovalOutcome,
    )
    assert outcome.approved and outcome.approver == "alice"
    final: SourceOnboardingState = await handle.result()
    assert final.active and final.approved_by == "alice"
    history = await handle.query("approval", result_type=ApprovalStatus)
    assert history.pending is None and [o.approver for o in history.history] == ["alice"]


async def test_rejection_by_signal_fails_onboarding(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    handle = await start_onboarding(
        client, settings, SourceConfig(name=name, url=f"{site}/sites/books/", require_approval=True)
    )
    status = await wait_for_pending(handle)
    assert status.pending is not None
    # An invalid signal cannot be refused: it is recorded and ignored.
    await handle.signal("approve", ApprovalDecision(request_id="wrong#1", approver="mallory"))
    await handle.signal(
        "reject",
        ApprovalDecision(
            request_id=status.pending.request_id, approver="bob", reason="wrong fields"
        ),
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PromotionRejectedError"
    assert "bob" in cause.message and "wrong fields" in cause.message
    final = await handle.query("approval", result_type=ApprovalStatus)
    assert any("mallory" in entry for entry in final.ignored)
    source = store_for(settings).get_source(name)
    assert source is not None and source.active_version is None


async def test_scrape_task_feeds_a_pipeline(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    await onboard(client, settings, SourceConfig(name=name, url=f"{site}/sites/books/"))
    state: PipelineRunState = await client.execute_workflow(
        "PipelineRun",
        PipelineRunInput(
            pipeline={
                "name": "books-etl",
                "params": {"source": name},
                "tasks": [
                    {
                        "name": "scrape",
                        "type": "scrape",
                        "params": {"source": "{{ params.source }}"},
                    },
                    {
                        "name": "check",
                        "type": "validate",
                        "depends_on": ["scrape"],
                        "params": {
                            "records": "{{ tasks.scrape.output.records }}",
                            "rules": [{"row_count": {"min": 20}}],
                        },
                    },
                ],
                "outputs": {"scraped": "{{ tasks.scrape.output.count }}"},
            }
        ),
        id=f"pipeline/books-etl/{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue,
        result_type=PipelineRunState,
    )
    assert state.status == RunStatus.SUCCEEDED
    assert state.outputs == {"scraped": 24}


async def test_the_scrape_example_pipeline_runs(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    await onboard(client, settings, SourceConfig(name=name, url=f"{site}/sites/books/"))
    state: PipelineRunState = await client.execute_workflow(
        "PipelineRun",
        PipelineRunInput(
            pipeline_ref="examples/pipelines/scrape_books.yaml", params={"source": name}
        ),
        id=f"pipeline/scrape_books/{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue,
        result_type=PipelineRunState,
    )
    assert state.status == RunStatus.SUCCEEDED
    assert state.outputs["scraped"] == 24
    assert 0 < state.outputs["deals"] < 24


async def test_a_failed_source_can_be_added_again(
    client: Client, settings: Settings, worker: MendlineWorker, site: str
) -> None:
    name = source_name()
    broken = await start_onboarding(
        client, settings, SourceConfig(name=name, url=f"{site}/sites/no-such-site/")
    )
    with pytest.raises(WorkflowFailureError):
        await broken.result()
    failed = store_for(settings).get_source(name)
    assert failed is not None and failed.status == "FAILED"
    retry = await client.start_workflow(
        "SourceOnboarding",
        SourceOnboardingInput(config=SourceConfig(name=name, url=f"{site}/sites/books/")),
        id=f"source/{name}/onboard",
        task_queue=settings.task_queue,
        result_type=SourceOnboardingState,
    )
    state: SourceOnboardingState = await retry.result()
    assert state.active and state.version == 1
