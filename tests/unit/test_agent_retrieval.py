"""Runbooks parse, retrieval ranks the right runbook first, and past incidents from a real
incident store are found and cited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.agent import RunbookError, load_runbooks, plan, retrieve
from activities.agent.retrieval import Query, parse_runbook
from activities.incidents_store import IncidentStore
from activities.storage import Database
from models.alerts import Metric, Severity
from models.incidents import EvaluationResult, IncidentChange
from models.remediation import FailureContext, Features, Prediction, RemediationAction
from models.settings import Settings

EXPECTED_RUNBOOKS = {
    "rate-limiting",
    "schema-drift",
    "layout-change",
    "auth-expiry",
    "upstream-outage",
    "bad-data",
    "resource-exhaustion",
    "timeouts",
}


def test_the_shipped_runbooks_parse_with_stable_ids() -> None:
    runbooks = load_runbooks()
    ids = {r.id for r in runbooks}
    assert ids >= EXPECTED_RUNBOOKS
    for runbook in runbooks:
        assert runbook.actions, f"{runbook.id} recommends no action"
        assert runbook.path.stem == runbook.id
        assert "## What to do" in runbook.body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Query("HttpStatusError returned HTTP 429 Too Many Requests", status=429), "rate-limiting"),
        (
            Query("SelectorDriftError selector matched nothing", error_type="SelectorDriftError"),
            "schema-drift",
        ),
        (
            Query("NoRecordsFoundError extracted 0 records", error_class="zero_records"),
            "layout-change",
        ),
        (Query("401 Unauthorized token expired", status=401), "auth-expiry"),
        (Query("DataValidationError not_null(email): 2 rows failed"), "bad-data"),
        (Query("MemoryError out of memory OOMKilled"), "resource-exhaustion"),
        (Query("FetchTimeoutError timed out", error_class="timeout"), "timeouts"),
        (Query("503 down for maintenance outage for hours"), "upstream-outage"),
    ],
)
def test_the_closest_runbook_comes_first(query: Query, expected: str) -> None:
    retrieved = retrieve(query, load_runbooks())
    assert retrieved.runbook_ids[0] == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# no front matter", "no front matter"),
        ("---\nid: Bad Id\ntitle: x\n---\nbody", "id must be"),
        ("---\nid: ok\n---\nbody", "title is missing"),
        (
            "---\nid: ok\ntitle: t\napplies_to: {actions: [reboot]}\n---\nbody",
            "unknown action 'reboot'",
        ),
        ("---\nid: ok\ntitle: t\napplies_to: {actions: retry}\n---\nbody", "must be a list"),
        ("---\nid: [\n---\nbody", "not valid YAML"),
    ],
)
def test_malformed_runbooks_are_located(text: str, problem: str) -> None:
    with pytest.raises(RunbookError, match=problem) as caught:
        parse_runbook(text, Path("runbooks/x.md"))
    assert "runbooks/x.md" in str(caught.value)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.md").write_text("---\nid: same\ntitle: t\n---\nbody\n")
    with pytest.raises(RunbookError, match="also used by"):
        load_runbooks(tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    database = Database(f"sqlite:///{tmp_path / 'mendline.db'}")
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    changes = [
        IncidentChange(
            fingerprint="errors{task=orders/fetch}",
            rule="orders-error-rate",
            metric=Metric.ERROR_RATE,
            severity=Severity.CRITICAL,
            labels={"pipeline": "orders", "task": "fetch", "scope": "orders/fetch"},
            opened_at=at,
            at=at,
            summary="orders/fetch failing: HTTP 429 Too Many Requests from api.example.com (rate limited)",
        ),
        IncidentChange(
            fingerprint="records{source=books}",
            rule="books-records",
            metric=Metric.RECORDS,
            severity=Severity.WARNING,
            labels={"source": "books", "scope": "books"},
            opened_at=at,
            at=at,
            summary="books: records dropped to zero after a page redesign",
        ),
    ]
    IncidentStore(database).apply(EvaluationResult(incidents_opened=changes))
    yield IncidentStore(database)
    database.dispose()


async def test_past_incidents_are_retrieved_and_cited(store: IncidentStore, tmp_path: Path) -> None:
    failure = FailureContext(
        pipeline="orders",
        task="fetch",
        task_type="http",
        error_type="HttpStatusError",
        message="GET https://api.example.com/orders returned HTTP 429 Too Many Requests",
        attempts=3,
    )
    outcome = await plan(
        failure,
        Features(attempts=3),
        Prediction(model="m", version=1, sha256="0" * 64, risk=0.5),
        Settings(data_dir=tmp_path),
        store,
    )
    rate_incident = next(i.id for i in store.incidents() if i.rule == "orders-error-rate")
    assert outcome.incidents[0] == rate_incident
    assert rate_incident in outcome.plan.evidence.incidents
    assert f"#{rate_incident}" in outcome.plan.rationale
    assert outcome.plan.action == RemediationAction.RETRY_WITH_BACKOFF
    assert outcome.runbooks[0] == "rate-limiting"


async def test_a_broken_runbook_directory_does_not_stop_planning(tmp_path: Path) -> None:
    (tmp_path / "bad.md").write_text("no front matter")
    outcome = await plan(
        FailureContext(error_type="FetchConnectError", message="connection refused"),
        Features(),
        Prediction(model="m", version=1, sha256="0" * 64, risk=0.3),
        Settings(data_dir=tmp_path, runbooks=tmp_path),
    )
    assert outcome.runbooks == [] and outcome.plan.evidence.runbooks == []
    assert outcome.plan.action == RemediationAction.RETRY_WITH_BACKOFF
