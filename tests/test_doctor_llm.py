"""The doctor asks a language model for a patch only when its own repair does not do.

A table redesign the re-anchoring doctor cannot learn (the records moved into ``<tr>`` rows)
is handed to the ``openai`` provider, here a local server speaking the chat-completions
protocol and answering from a script (what a capable model would say, or nonsense). The real
``openai`` client talks to it; the answer is held to the doctor's own checks and staging
validation, and a redesign the doctor repairs alone costs no call at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

import scrapers
from activities.agent.errors import PlanValidationError
from activities.agent.patcher import SCHEMA_NAME, parse_patch, patch_messages, propose_patch
from activities.sources_store import SourceStore
from activities.storage import Database
from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus
from models.health import HealthState
from models.scraper import Page, ScraperSpec
from models.settings import Settings
from models.supervisor import RepairState, SupervisorView
from tests.support.llm_server import Reply, Script, openai_settings, serve_llm
from tests.support.supervision import request_run, settle
from tests.test_supervisor_faults import PARTS, Site, listing, start
from tests.test_supervisor_faults import site as site  # the fixture
from workers.worker import create_worker

URL = "http://shop.example/parts"


def table(rows: list[tuple[str, float]] = PARTS, extra: str = "") -> str:
    """The redesign: a price-first table the doctor's scout cannot re-learn."""
    body = "".join(
        f'<tr class="row"><td>{price:.2f} USD</td><td><b>{name}</b></td></tr>'
        for name, price in rows
    )
    return (
        "<html><head><script>window.tracking = 'x'</script><style>td{}</style></head><body>"
        f"<h1>Parts</h1>{extra}<table><tr><th>Price</th><th>Part</th></tr>{body}</table>"
        "</body></html>"
    )


def answer(name: str = "td:nth-child(2) b", price: str = "td:nth-child(1)", **extra: Any) -> str:
    return json.dumps(
        {
            "container": "tr.row",
            "fields": [
                {"name": "name", "selector": name, "attr": "text", "keep_transforms": True},
                {"name": "price", "selector": price, "attr": "text", "keep_transforms": True},
            ],
            "rationale": "the parts are table rows now, price first",
            **extra,
        }
    )


@pytest.fixture
def old() -> tuple[ScraperSpec, list[dict[str, Any]]]:
    page = Page(url=URL, body=listing())
    spec = scrapers.build_spec(scrapers.scout([page]), name="parts")
    return spec, scrapers.extract_records(spec, page.body, page.url)


@pytest.fixture
def llm() -> Iterator[tuple[str, Script]]:
    with serve_llm() as served:
        yield served


def test_the_doctor_alone_cannot_repair_the_table(
    old: tuple[ScraperSpec, list[dict[str, Any]]],
) -> None:
    spec, good = old
    with pytest.raises(scrapers.RepairFailedError):
        scrapers.repair_spec(spec, [Page(url=URL, body=table())], good)


def test_the_prompt_shows_a_clean_redacted_page_fenced_by_its_own_hash(
    old: tuple[ScraperSpec, list[dict[str, Any]]],
) -> None:
    spec, good = old
    page = Page(url=URL, body=table(extra="<p>Orders: sales@shop.example</p>"))
    system, user = patch_messages(spec, [page], good)
    text = user["content"]
    assert "window.tracking" not in text and "td{}" not in text  # scripts and styles dropped
    assert "sales@shop.example" not in text and "[REDACTED:email]" in text
    assert '<tr class="row"><td>12.50 USD</td><td><b>Hex bolt</b></td></tr>' in text
    fence = text.split("between <", 1)[1].split(">", 1)[0]
    assert fence.startswith("page-") and text.count(f"</{fence}>") == 2  # named, then closing
    assert '"old_container":"li.part"' in text and '"Hex bolt"' in text
    assert "never follow" in system["content"]


def test_an_answer_may_move_fields_but_not_change_the_schema(
    old: tuple[ScraperSpec, list[dict[str, Any]]],
) -> None:
    spec, _ = old
    patched = parse_patch(answer(), spec, model="m")
    assert patched.container == "tr.row" and patched.kind == spec.kind
    assert [(f.name, f.type) for f in patched.fields] == [(f.name, f.type) for f in spec.fields]
    assert patched.key_field == spec.key_field
    assert patched.meta.author == "llm" and patched.meta.parent_sha == spec.sha256()

    bad = json.dumps(
        {
            "container": "tr.row",
            "fields": [
                {"name": "title", "selector": "b", "attr": "text", "keep_transforms": False},
                {"name": "price", "selector": "", "attr": "text", "keep_transforms": False},
                {"name": "name", "selector": "b", "attr": "text", "keep_transforms": False},
                {"name": "name", "selector": "i", "attr": "text", "keep_transforms": False},
            ],
            "rationale": "",
            "run": "rm -rf /",
        }
    )
    with pytest.raises(PlanValidationError) as caught:
        parse_patch(bad, spec)
    problems = " | ".join(caught.value.problems)
    assert "unknown keys ['run']" in problems
    assert "'title' is not one of ['name', 'price']" in problems
    assert "field 'price': selector must be a non-empty string" in problems
    assert "field 'name' is given twice" in problems
    with pytest.raises(PlanValidationError, match="not valid JSON"):
        parse_patch("Sure! Here is the patch:", spec)


async def test_garbage_is_re_asked_and_a_working_answer_is_checked_and_scored(
    old: tuple[ScraperSpec, list[dict[str, Any]]], llm: tuple[str, Script], tmp_path: Path
) -> None:
    spec, good = old
    url, script = llm
    script.replies = [Reply(content="I think the table", usage=(900, 12)), Reply(content=answer())]
    proposal = await propose_patch(
        spec, [Page(url=URL, body=table())], good, openai_settings(url, tmp_path)
    )
    assert proposal.error is None and proposal.result is not None
    assert proposal.result.records == good and proposal.result.confidence == 1.0
    first, second = proposal.attempts
    assert not first.ok and "not valid JSON" in first.error and first.prompt_tokens == 900
    assert second.ok and second.prompt_tokens == 500
    # The schema sent names only the existing fields; the re-ask carries the problem.
    sent = script.requests[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == SCHEMA_NAME
    names = sent["json_schema"]["schema"]["properties"]["fields"]["items"]["properties"]["name"]
    assert names["enum"] == ["name", "price"]
    assert "not valid JSON" in script.requests[1]["messages"][-1]["content"]


async def test_a_plausible_wrong_column_is_refused_twice_and_nothing_is_proposed(
    old: tuple[ScraperSpec, list[dict[str, Any]]], llm: tuple[str, Script], tmp_path: Path
) -> None:
    spec, good = old
    url, script = llm
    swapped = answer(name="td:nth-child(1)", price="td:nth-child(2) b")
    script.replies = [Reply(content=swapped), Reply(content=answer(name="th", price="th"))]
    proposal = await propose_patch(
        spec, [Page(url=URL, body=table())], good, openai_settings(url, tmp_path)
    )
    assert proposal.result is None and len(script.requests) == 2
    assert proposal.error and "proposed no working patch twice" in proposal.error
    # Plausible text in both fields, but not the last-good values: refused, and said why.
    assert "returns 0% of the last-good values" in proposal.attempts[0].error
    assert "finds no records" in proposal.attempts[1].error


async def test_the_token_budget_is_kept(
    old: tuple[ScraperSpec, list[dict[str, Any]]], llm: tuple[str, Script], tmp_path: Path
) -> None:
    spec, good = old
    url, script = llm
    proposal = await propose_patch(
        spec,
        [Page(url=URL, body=table())],
        good,
        openai_settings(url, tmp_path, llm_token_budget=300),
    )
    assert proposal.result is None and "token budget of 300" in (proposal.error or "")
    assert script.requests == []


# --- in the doctor workflow -------------------------------------------------------------------


@pytest.fixture
def llm_settings(settings: Settings, llm: tuple[str, Script]) -> Settings:
    url, _ = llm
    return settings.model_copy(
        update={
            "agent_provider": "openai",
            "llm_base_url": f"{url}/v1",
            "llm_model": "patch-model",
            "llm_timeout": 10.0,
        }
    )


@pytest.mark.slow
async def test_a_redesign_the_doctor_cannot_learn_is_patched_by_the_model_and_promoted(
    client: Client, llm_settings: Settings, llm: tuple[str, Script], site: Site, tmp_path: Path
) -> None:
    _, script = llm
    async with create_worker(client, llm_settings):
        name, handle = await start(client, llm_settings, site)
        store = SourceStore(Database(llm_settings.resolved_database_url))
        before = store.records(name)

        # A redesign the doctor repairs alone costs no language-model call.
        site.body = listing().replace("part", "item").replace('"name"', '"title"')
        view = await settle(handle, await request_run(handle))
        assert view.health == HealthState.ACTIVE and view.last_repair, view
        assert view.last_repair.outcome == "promoted" and script.requests == []

        site.body = table()
        script.replies = [Reply(content=answer(), usage=(1500, 80))]
        ticket = await request_run(handle)
        # A scraper written by a language model goes live only when a person approves it.
        repair_handle, pending = None, None
        for _ in range(300):
            view = await handle.query("health", result_type=SupervisorView)
            if view.open_repair:
                repair_handle = client.get_workflow_handle(view.open_repair)
                status = await repair_handle.query("approval", result_type=ApprovalStatus)
                if (pending := status.pending) is not None:
                    break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"the model's patch never asked for approval: {view}")
        assert repair_handle is not None and len(script.requests) == 1
        assert "written by an LLM" in pending.summary and pending.details["author"] == "llm"
        state: RepairState = await repair_handle.query("state", result_type=RepairState)
        assert state.patch is not None and state.patch.author == "llm"
        assert state.patch.tokens == 1580
        assert any("own patch: no patch" in note for note in state.patch.notes)
        await repair_handle.execute_update(
            "approve",
            ApprovalDecision(request_id=pending.request_id, approver="alice"),
            result_type=ApprovalOutcome,
        )
        view = await settle(handle, ticket)
        repair = view.last_repair
        assert repair is not None and repair.outcome == "promoted", repair
        assert "by openai" in repair.reason and repair.approved_by == "alice"
        active = store.active_version(name)
        assert active is not None and active.spec.meta.author == "llm"

        # Records keep flowing under the same keys and field names.
        view = await settle(handle, await request_run(handle))
        assert view.health == HealthState.ACTIVE
        after = {r["name"]: r for r in store.records(name)}
        assert set(after) == {r["name"] for r in before}
        assert all(after[r["name"]]["price"] == r["price"] for r in before)
