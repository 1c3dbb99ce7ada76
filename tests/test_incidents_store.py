"""The incidents store on SQLite and PostgreSQL: applying evaluations (idempotently),
deliveries, resolution by hand and what the evaluator learns from it, and the CLI."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from activities.alerting import evaluate
from activities.incidents_store import IncidentNotFoundError, IncidentStore
from activities.storage import Database
from models.alerts import AlertRule
from models.incidents import (
    AlertKind,
    AlertState,
    Delivery,
    EvaluationResult,
    IncidentStatus,
    MetricPoint,
)
from workers.cli.main import app

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
FP = "errors{pipeline=orders}"
RULE = AlertRule.model_validate(
    {
        "name": "errors",
        "metric": "error_rate",
        "scope": "task",
        "operator": ">",
        "threshold": 0.2,
        "cooldown": "30m",
        "group_by": ["pipeline"],
        "notifiers": ["hook", "log"],
    }
)


@pytest.fixture
def store(db: Database) -> IncidentStore:
    return IncidentStore(db)


class Monitor:
    """What the Monitor's activity does each scan: reconcile, evaluate, apply."""

    def __init__(self, store: IncidentStore) -> None:
        self.store = store
        self.state = AlertState()
        self.now = T0
        self.rates: dict[str, list[float]] = {}

    def tick(self, rate: float, tasks: int = 5) -> tuple[EvaluationResult, list]:  # type: ignore[type-arg]
        for i in range(tasks):
            self.rates.setdefault(f"orders/t{i}", []).append(rate)
        series = {
            ("error_rate", "task", name): [
                MetricPoint(at=self.now - STEP * (len(v) - 1 - j), value=x) for j, x in enumerate(v)
            ]
            for name, v in self.rates.items()
        }
        self.state = self.store.reconcile(self.state)
        result = evaluate([RULE], series, self.state, self.now)
        alerts = self.store.apply(result)
        self.state = result.state
        self.now += STEP
        return result, alerts


def test_an_outage_is_one_incident_with_its_alerts(store: IncidentStore) -> None:
    monitor = Monitor(store)
    monitor.tick(0.0)
    _, [opened] = monitor.tick(0.8)
    assert opened.kind == AlertKind.OPENED and opened.alert_id is not None
    [incident] = store.incidents(open_only=True)
    assert opened.incident_id == incident.id
    assert incident.fingerprint == FP and incident.status == IncidentStatus.OPEN
    assert incident.opened_at == T0 + STEP
    assert len(incident.breaches) == 5 and incident.breaches[0].value == 0.8
    for _ in range(6):  # 30 minutes more: updated, one reminder at the cooldown
        monitor.tick(0.9)
    monitor.tick(0.0)  # back to normal
    [incident] = store.incidents()
    assert incident.status == IncidentStatus.RESOLVED
    assert incident.resolved_by == "auto" and incident.resolution == "back to normal"
    assert incident.resolved_at == T0 + STEP * 8
    assert incident.last_breach_at == T0 + STEP * 7
    assert incident.breaches[0].value == 0.9  # the last update's
    assert incident.alerts_sent == 2
    assert [a.kind for a in store.alerts(incident.id)] == [AlertKind.OPENED, AlertKind.REMINDER]


def test_applying_the_same_result_twice_writes_nothing_twice(store: IncidentStore) -> None:
    monitor = Monitor(store)
    result, first = monitor.tick(0.9)
    again = store.apply(result)  # the activity was retried after a crash
    assert [a.alert_id for a in again] == [a.alert_id for a in first]
    assert [a.incident_id for a in again] == [a.incident_id for a in first]
    [incident] = store.incidents()
    assert incident.alerts_sent == 1
    assert len(store.alerts(incident.id)) == 1


def test_deliveries_are_recorded_per_notifier(store: IncidentStore) -> None:
    _, [alert] = Monitor(store).tick(0.9)
    assert alert.alert_id is not None and alert.incident_id is not None
    failed = Delivery(notifier="hook", type="webhook", ok=False, attempts=3, error="down")
    store.record_delivery(alert.alert_id, failed)
    store.record_delivery(alert.alert_id, Delivery(notifier="log", type="log", ok=True, attempts=1))
    retried = Delivery(notifier="hook", type="webhook", ok=True, attempts=1, detail="HTTP 200")
    store.record_delivery(alert.alert_id, retried)
    [record] = store.alerts(alert.incident_id)
    assert sorted((d.notifier, d.ok) for d in record.deliveries) == [("hook", True), ("log", True)]


def test_resolved_by_hand_it_stays_closed_until_the_metric_recovers(store: IncidentStore) -> None:
    monitor = Monitor(store)
    monitor.tick(0.9)
    [incident] = store.incidents()
    resolved, changed = store.resolve(incident.id, by="alice", reason="known: upstream down")
    assert changed and resolved.resolved_by == "alice"
    assert resolved.resolution == "known: upstream down"
    for _ in range(8):  # still failing, well past the cooldown: no new incident, no alert
        result, alerts = monitor.tick(0.9)
        assert result.incidents_opened == [] and alerts == []
    assert monitor.state.silenced == [FP]
    monitor.tick(0.0)
    _, alerts = monitor.tick(0.9)  # a new outage after recovery is a new incident
    assert [a.kind for a in alerts] == [AlertKind.OPENED]
    assert [i.status for i in store.incidents()] == [IncidentStatus.OPEN, IncidentStatus.RESOLVED]


def test_a_lost_state_is_rebuilt_from_the_store_without_a_second_alert(
    store: IncidentStore,
) -> None:
    monitor = Monitor(store)
    monitor.tick(0.9)
    monitor.state = AlertState()  # e.g. the Monitor started afresh
    result, alerts = monitor.tick(0.9)
    assert result.incidents_opened == [] and alerts == []
    assert [c.fingerprint for c in result.incidents_updated] == [FP]
    assert len(store.incidents()) == 1


def test_resolving_an_unknown_or_resolved_incident(store: IncidentStore) -> None:
    with pytest.raises(IncidentNotFoundError, match="no incident 42; list them with"):
        store.resolve(42, by="alice")
    Monitor(store).tick(0.9)
    [incident] = store.incidents()
    assert store.resolve(incident.id, by="alice")[1] is True
    again, changed = store.resolve(incident.id, by="bob")
    assert changed is False and again.resolved_by == "alice"
    with pytest.raises(ValueError, match="must name a person"):
        store.resolve(incident.id, by="auto")


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    for name in list(os.environ):
        if name.startswith("MENDLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MENDLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MENDLINE_DATABASE_URL", db_url)
    monkeypatch.setenv("MENDLINE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("COLUMNS", "250")


def mendline(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_incidents_list_show_and_resolve(cli_env: None, store: IncidentStore) -> None:
    empty = mendline("incidents", "list")
    assert empty.exit_code == 0 and "no incidents recorded yet" in empty.output
    monitor = Monitor(store)
    _, [alert] = monitor.tick(0.9)
    assert alert.alert_id is not None
    store.record_delivery(
        alert.alert_id, Delivery(notifier="hook", type="webhook", ok=True, attempts=1)
    )
    [incident] = store.incidents()

    listed = mendline("incidents", "list", "--open")
    assert listed.exit_code == 0, listed.output
    assert FP in listed.output and "open" in listed.output and "critical" not in listed.output
    as_json = json.loads(mendline("incidents", "list", "--json").stdout)
    assert [(i["id"], i["status"], i["fingerprint"]) for i in as_json] == [
        (incident.id, "open", FP)
    ]

    shown = mendline("incidents", "show", str(incident.id))
    assert shown.exit_code == 0, shown.output
    assert f"incident {incident.id} open — {FP}" in shown.output
    assert "error_rate is 0.9 on task orders/t0 (> 0.2)" in shown.output
    assert "hook ok" in shown.output
    detail = json.loads(mendline("incidents", "show", str(incident.id), "--json").stdout)
    assert detail["alerts"][0]["kind"] == "opened" and len(detail["breaches"]) == 5

    resolved = mendline(
        "incidents", "resolve", str(incident.id), "--reason", "fixed upstream", "--as", "alice"
    )
    assert resolved.exit_code == 0, resolved.output
    assert f"resolved incident {incident.id} ({FP}) as alice" in resolved.output
    again = mendline("incidents", "resolve", str(incident.id))
    assert (
        again.exit_code == 0
        and "was already resolved" in again.output
        and "by alice" in again.output
    )
    assert mendline("incidents", "list", "--open", "--json").stdout.strip() == "[]"
    assert "fixed upstream" in mendline("incidents", "show", str(incident.id)).output

    missing = mendline("incidents", "show", "999")
    assert missing.exit_code == 1
    assert "no incident 999; list them with `mendline incidents list`" in missing.output
