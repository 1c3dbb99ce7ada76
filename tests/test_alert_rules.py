"""Alert rules: the rules file (located errors, all at once), evaluation with grouping,
cooldowns and resolution, and ``mendline alerts list``."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from activities.alerting import evaluate
from models.alert_rules import RuleFileError, load_rule_file, load_rules_text
from models.alerts import AlertRule, RuleFile
from models.incidents import AlertKind, AlertState, EvaluationResult, MetricPoint, SeriesKey
from workers.cli.main import app

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)


def rule(**fields: object) -> AlertRule:
    values: dict[str, object] = {
        "name": "errors",
        "metric": "error_rate",
        "scope": {"kind": "task"},
        "operator": ">",
        "threshold": 0.2,
        "cooldown": "1h",
        "group_by": ["pipeline"],
    }
    values.update(fields)
    return AlertRule.model_validate(values)


def series_of(values: list[float], end: datetime) -> list[MetricPoint]:
    """Points every 5 minutes, the last at ``end``."""
    start = end - STEP * (len(values) - 1)
    return [MetricPoint(at=start + STEP * i, value=v) for i, v in enumerate(values)]


class Monitor:
    """Runs evaluate every 5 minutes the way the Monitor does, carrying the state."""

    def __init__(self, rules: list[AlertRule]) -> None:
        self.rules = rules
        self.state = AlertState()
        self.now = T0
        self.history: dict[tuple[str, str, str], list[float]] = {}
        self.results: list[EvaluationResult] = []

    def tick(self, values: dict[tuple[str, str, str], float]) -> EvaluationResult:
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)
        series = {k: series_of(v, self.now) for k, v in self.history.items()}
        result = evaluate(self.rules, series, self.state, self.now)
        self.state = result.state
        self.results.append(result)
        self.now += STEP
        return result

    def alerts(self) -> list[tuple[AlertKind, str]]:
        return [(a.kind, a.fingerprint) for r in self.results for a in r.alerts_to_send]


def task_rates(
    rate: float, tasks: int = 30, pipeline: str = "orders"
) -> dict[tuple[str, str, str], float]:
    return {("error_rate", "task", f"{pipeline}/t{i}"): rate for i in range(tasks)}


# --- grouping, cooldown, resolution ------------------------------------------------------------


def test_a_flood_of_failures_is_one_incident_and_one_alert_per_cooldown() -> None:
    monitor = Monitor([rule()])
    for _ in range(3):
        monitor.tick(task_rates(0.0))
    opened = monitor.tick(task_rates(0.9))  # 30 tasks of one pipeline fail at once
    assert [c.fingerprint for c in opened.incidents_opened] == ["errors{pipeline=orders}"]
    assert len(opened.incidents_opened[0].breaches) == 30
    assert [a.kind for a in opened.alerts_to_send] == [AlertKind.OPENED]
    assert "and 20 more" in opened.alerts_to_send[0].summary

    for _ in range(11):  # the outage goes on for 55 more minutes: updates, no alerts
        result = monitor.tick(task_rates(0.9))
        assert result.incidents_opened == [] and result.alerts_to_send == []
        assert [c.fingerprint for c in result.incidents_updated] == ["errors{pipeline=orders}"]
    reminder = monitor.tick(task_rates(0.9))  # one cooldown (1 h) after the first alert
    assert [a.kind for a in reminder.alerts_to_send] == [AlertKind.REMINDER]

    resolved = monitor.tick(task_rates(0.0))
    assert [c.fingerprint for c in resolved.incidents_resolved] == ["errors{pipeline=orders}"]
    assert resolved.alerts_to_send == []  # notify_resolved is off by default
    assert monitor.state.open == {}
    assert monitor.alerts() == [
        (AlertKind.OPENED, "errors{pipeline=orders}"),
        (AlertKind.REMINDER, "errors{pipeline=orders}"),
    ]


def test_group_by_splits_incidents_and_no_group_by_makes_one() -> None:
    both = {**task_rates(0.9, 3, "orders"), **task_rates(0.9, 3, "books")}
    split = Monitor([rule()]).tick(both)
    assert sorted(c.fingerprint for c in split.incidents_opened) == [
        "errors{pipeline=books}",
        "errors{pipeline=orders}",
    ]
    assert len(split.alerts_to_send) == 2
    whole = Monitor([rule(group_by=[])]).tick(both)
    assert [c.fingerprint for c in whole.incidents_opened] == ["errors"]
    assert len(whole.incidents_opened[0].breaches) == 6
    assert len(whole.alerts_to_send) == 1


def test_for_waits_until_the_breach_has_lasted() -> None:
    monitor = Monitor([rule(**{"for": "10m"})])
    monitor.tick(task_rates(0.0, 1))
    assert monitor.tick(task_rates(0.9, 1)).incidents_opened == []  # 0 min
    assert monitor.tick(task_rates(0.9, 1)).incidents_opened == []  # 5 min
    assert len(monitor.tick(task_rates(0.9, 1)).incidents_opened) == 1  # 10 min


def test_a_blip_shorter_than_for_opens_nothing() -> None:
    monitor = Monitor([rule(**{"for": "10m"})])
    for rate in (0.0, 0.9, 0.9, 0.0, 0.9, 0.0):
        result = monitor.tick(task_rates(rate, 1))
        assert result.incidents_opened == [] and result.alerts_to_send == []


def test_flapping_within_the_cooldown_alerts_once() -> None:
    monitor = Monitor([rule()])
    for rate in (0.9, 0.0, 0.9, 0.0, 0.9):
        monitor.tick(task_rates(rate, 1))
    opened = sum(len(r.incidents_opened) for r in monitor.results)
    assert opened == 3  # three incidents are recorded …
    assert monitor.alerts() == [(AlertKind.OPENED, "errors{pipeline=orders}")]  # … one alert


def test_resolve_after_keeps_the_incident_through_a_short_dip() -> None:
    monitor = Monitor([rule(resolve_after="15m")])
    monitor.tick(task_rates(0.9, 1))
    for _ in range(2):  # normal 5 and 10 minutes after the last breach
        assert monitor.tick(task_rates(0.0, 1)).incidents_resolved == []
    assert len(monitor.tick(task_rates(0.0, 1)).incidents_resolved) == 1  # 15 min


def test_notify_resolved_sends_a_resolved_alert() -> None:
    monitor = Monitor([rule(notify_resolved=True)])
    monitor.tick(task_rates(0.9, 1))
    result = monitor.tick(task_rates(0.0, 1))
    assert [a.kind for a in result.alerts_to_send] == [AlertKind.RESOLVED]
    assert "resolved" in result.alerts_to_send[0].title


def test_auto_resolve_off_keeps_the_incident_open() -> None:
    monitor = Monitor([rule(auto_resolve=False)])
    monitor.tick(task_rates(0.9, 1))
    for _ in range(5):
        assert monitor.tick(task_rates(0.0, 1)).incidents_resolved == []
    assert list(monitor.state.open) == ["errors{pipeline=orders}"]


def test_a_fingerprint_resolved_by_hand_is_not_reopened_until_seen_normal() -> None:
    monitor = Monitor([rule()])
    monitor.tick(task_rates(0.9, 1))
    # What IncidentStore.reconcile does when a person resolved it:
    fp = "errors{pipeline=orders}"
    monitor.state = monitor.state.model_copy(update={"open": {}, "silenced": [fp]})
    for _ in range(3):
        result = monitor.tick(task_rates(0.9, 1))
        assert result.incidents_opened == [] and result.alerts_to_send == []
    monitor.tick(task_rates(0.0, 1))
    assert monitor.state.silenced == []
    monitor.now += timedelta(hours=1)  # past the cooldown of the first alert
    reopened = monitor.tick(task_rates(0.9, 1))
    assert [c.fingerprint for c in reopened.incidents_opened] == [fp]
    assert [a.kind for a in reopened.alerts_to_send] == [AlertKind.OPENED]


def test_an_incident_without_data_stays_open_and_a_removed_rule_resolves_it() -> None:
    monitor = Monitor([rule()])
    monitor.tick(task_rates(0.9, 1))
    result = evaluate(monitor.rules, {}, monitor.state, monitor.now)
    assert result.incidents_resolved == [] and list(result.state.open)
    other = rule(name="other")
    result = evaluate([other], {}, monitor.state, monitor.now)
    assert [c.resolution for c in result.incidents_resolved] == ["its rule was removed"]
    assert result.state.open == {} and result.state.last_alert_at == {}


def test_a_detector_rule_opens_on_a_latency_spike() -> None:
    latency = rule(
        name="latency",
        metric="task_latency_seconds",
        operator=None,
        threshold=None,
        detector={"kind": "zscore", "direction": "up"},
    )
    values = [2.0 + 0.1 * ((i * 7) % 5) for i in range(60)]
    key = SeriesKey("task_latency_seconds", "task", "orders/extract")
    quiet = evaluate([latency], {key: series_of(values, T0)}, AlertState(), T0)
    assert quiet.incidents_opened == []
    result = evaluate([latency], {key: series_of([*values, 9.0], T0)}, AlertState(), T0)
    [change] = result.incidents_opened
    [breach] = change.breaches
    assert breach.scope_name == "orders/extract" and breach.value == 9.0
    assert breach.expected == pytest.approx(2.2, abs=0.1)
    assert breach.score is not None and breach.score > 3.5
    assert "task_latency_seconds is 9 on task orders/extract" in breach.reason


def test_scope_name_patterns_and_source_health_by_state_name() -> None:
    health = rule(
        name="unhealthy",
        metric="source_health",
        scope={"kind": "source", "name": "shop-*"},
        operator=">=",
        threshold="quarantined",
        group_by=["source"],
    )
    assert health.threshold == 2.0
    assert health.condition_text() == ">= QUARANTINED"
    series = {
        ("source_health", "source", "shop-a"): series_of([0, 2], T0),
        ("source_health", "source", "shop-b"): series_of([0, 1], T0),
        ("source_health", "source", "books"): series_of([0, 3], T0),
    }
    result = evaluate([health], series, AlertState(), T0)
    assert [c.fingerprint for c in result.incidents_opened] == ["unhealthy{source=shop-a}"]


def test_evaluation_is_pure_and_its_state_round_trips_through_json() -> None:
    monitor = Monitor([rule()])
    monitor.tick(task_rates(0.9, 2))
    state = monitor.state
    before = state.model_dump_json()
    series = {k: series_of(v, monitor.now) for k, v in monitor.history.items()}
    first = evaluate(monitor.rules, series, state, monitor.now)
    again = evaluate(monitor.rules, series, state, monitor.now)
    assert first == again
    assert state.model_dump_json() == before  # the input state is not changed
    restored = AlertState.model_validate_json(first.state.model_dump_json())
    assert restored == first.state


def test_points_after_now_are_ignored() -> None:
    key = ("error_rate", "pipeline", "orders")
    series = {key: [MetricPoint(at=T0, value=0.0), MetricPoint(at=T0 + STEP, value=1.0)]}
    result = evaluate([rule(scope="pipeline")], series, AlertState(), T0)
    assert result.incidents_opened == []


# --- rules files ---------------------------------------------------------------------------------


def test_the_bundled_rules_file_is_valid() -> None:
    rules = load_rule_file(REPO / "examples" / "alerts.yaml")
    assert {r.name for r in rules.rules} >= {"pipeline-errors", "task-latency", "source-unhealthy"}
    assert all(r.notifiers for r in rules.rules)


BAD_RULES = textwrap.dedent(
    """\
    notifiers:
      hook: {type: webhook, url: "ftp://hooks.example/a"}
      pager: {type: pagerduty}
    rules:
      - name: latency
        metric: task_latency_secs
        scope: task
        detector: {kind: zscore, windw: 20}
        notifiers: [hok]
      - name: latency
        metric: error_rate
        scope: {kind: pipeline}
        operator: ">"
        severity: urgent
        for: 5 minutes
      - name: drop
        metric: records
        scope: source
        detector: {kind: ewma}
        group_by: [task]
    """
)


def test_a_bad_rules_file_reports_every_problem_with_its_line() -> None:
    with pytest.raises(RuleFileError) as caught:
        load_rules_text(BAD_RULES, "alerts.yaml")
    text = str(caught.value)
    expected = [
        "alerts.yaml:2: notifiers.hook.url: url must start with http:// or https://",
        "alerts.yaml:3: notifiers.pager: unknown kind 'pagerduty'",
        "alerts.yaml:6: rules[0] (latency).metric: 'task_latency_secs' is not one of",
        "(did you mean 'task_latency_seconds'?)",
        "alerts.yaml:8: rules[0] (latency).detector.windw: unknown field 'windw' (did you mean 'window'?)",
        "alerts.yaml:9: rules[0] (latency).notifiers: unknown notifier 'hok' (did you mean 'hook'?)",
        "alerts.yaml:10: rules[1] (latency): missing 'threshold'",
        "alerts.yaml:10: rules[1] (latency).name: duplicate rule name 'latency'",
        "alerts.yaml:14: rules[1] (latency).severity: 'urgent' is not one of info, warning, critical",
        "alerts.yaml:15: rules[1] (latency).for: expected a duration",
        "alerts.yaml:16: rules[2] (drop): group_by task is not a label of source scopes (use: scope, source)",
    ]
    for fragment in expected:
        assert fragment in text, f"missing {fragment!r} in:\n{text}"
    assert text.startswith(f"invalid rules file ({len(caught.value.issues)} problems):")
    assert len(caught.value.issues) == 10


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("rules:\n  - name: a\n    metric: [\n", "alerts.yaml:4: not valid YAML"),
        ("- just\n- a list\n", "alerts.yaml:1: a rules file is a mapping"),
        (
            "rules:\n  - name: a\n    metric: error_rate\n    scope: pipeline\n",
            "alerts.yaml:2: rules[0] (a): a rule needs a condition",
        ),
        (
            "rules:\n  - name: a\n    metric: source_health\n    scope: task\n    operator: '>'\n    threshold: 1\n",
            "metric source_health is not measured per task (use scope kind: source)",
        ),
        (
            "rules:\n  - name: a\n    metric: error_rate\n    scope: pipeline\n    operator: '>'\n"
            "    threshold: 1\n    detector: {kind: zscore}\n",
            "give either operator + threshold or detector, not both",
        ),
        (
            "rules:\n  - name: a\n    metric: records\n    scope: source\n"
            "    detector: {kind: zscore, window: 5, min_points: 10}\n",
            "min_points (10) exceeds window (5)",
        ),
        (
            "notifiers:\n  m: {type: email, to: nobody}\n",
            "alerts.yaml:2: notifiers.m.to: not an e-mail address",
        ),
    ],
)
def test_each_kind_of_mistake_is_explained(text: str, fragment: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        load_rules_text(text, "alerts.yaml")
    assert fragment in str(caught.value)


def test_empty_sections_are_allowed() -> None:
    assert load_rules_text("notifiers:\n  # none yet\nrules:\n") == RuleFile()


def test_a_missing_rules_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="set MENDLINE_ALERT_RULES or pass --rules FILE"):
        load_rule_file(tmp_path / "nope.yaml")


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("MENDLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MENDLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MENDLINE_ALERT_RULES", str(REPO / "examples" / "alerts.yaml"))
    monkeypatch.setenv("MENDLINE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("COLUMNS", "250")
    yield


def mendline(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_alerts_list_shows_the_rules_of_the_configured_file(cli_env: None) -> None:
    result = mendline("alerts", "list")
    assert result.exit_code == 0, result.output
    assert "examples/alerts.yaml: 5 rules" in result.output
    assert "pipeline-errors" in result.output and "> 0.2" in result.output
    assert "source-unhealthy" in result.output and ">= QUARANTINED" in result.output
    as_json = json.loads(mendline("alerts", "list", "--json").stdout)
    assert as_json["rules"][0]["name"] == "pipeline-errors"
    assert as_json["rules"][1]["for"] == 600.0


def test_alerts_list_exits_1_with_every_problem(cli_env: None, tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(BAD_RULES, encoding="utf-8")
    result = mendline("alerts", "list", "--rules", str(path))
    assert result.exit_code == 1
    assert "invalid rules file (10 problems)" in result.output
    assert f"{path}:9: rules[0] (latency).notifiers: unknown notifier 'hok'" in result.output
    assert "Traceback" not in result.output


def test_alerts_test_of_an_unknown_rule_suggests_one(cli_env: None) -> None:
    result = mendline("alerts", "test", "pipeline-eror")
    assert result.exit_code == 1
    assert (
        "no rule 'pipeline-eror' in the rules file (did you mean 'pipeline-errors'?)"
        in result.output
    )


def test_the_readme_example_is_a_valid_rules_file() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Alerts and incidents", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    rules = load_rules_text(example, "README.md")
    assert [r.name for r in rules.rules] == ["pipeline-errors", "task-latency", "source-unhealthy"]
    assert rules.rule("source-unhealthy").threshold == 2.0


@pytest.mark.parametrize(
    "command",
    [
        ("alerts",),
        ("alerts", "list"),
        ("alerts", "test"),
        ("incidents",),
        ("incidents", "list"),
        ("incidents", "show"),
        ("incidents", "resolve"),
    ],
    ids=" ".join,
)
def test_help_of_the_alert_commands(cli_env: None, command: tuple[str, ...]) -> None:
    result = mendline(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


def test_non_finite_points_are_left_out() -> None:
    key = ("error_rate", "pipeline", "orders")
    points = [
        MetricPoint(at=T0 - STEP, value=0.9),
        MetricPoint(at=T0, value=float("nan")),
    ]
    result = evaluate([rule(scope="pipeline")], {key: points}, AlertState(), T0)
    [change] = result.incidents_opened
    assert change.breaches[0].value == 0.9


def test_silences_of_removed_rules_are_forgotten() -> None:
    state = AlertState(silenced=["errors{pipeline=orders}", "gone{pipeline=orders}"])
    result = evaluate([rule()], {}, state, T0)
    assert result.state.silenced == ["errors{pipeline=orders}"]
