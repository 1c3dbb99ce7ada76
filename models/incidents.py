"""Series the Monitor scans, and what rule evaluation makes of them: breaches, incidents,
alerts, deliveries, and the evaluator's state.

Series are keyed by :class:`SeriesKey` ``(metric, scope kind, scope name)`` with
time-ordered :class:`MetricPoint` values; a task's scope name is ``<pipeline>/<task>``.
An incident is identified by its *fingerprint* (rule name + group labels, e.g.
``task-latency{pipeline=orders}``) and its opening time; at most one incident per
fingerprint is open at a time.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from models.alerts import Metric, ScopeKind, Severity

FINGERPRINT_LENGTH = 255
"""Longest fingerprint; longer ones end in a hash of the whole (see ``fingerprint``)."""

# --- series ----------------------------------------------------------------------------------


class MetricPoint(BaseModel):
    """One observation of a metric (timezone-aware ``at``)."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    value: float


class SeriesKey(NamedTuple):
    """Key of a series: plain ``(metric, kind, name)`` tuples work as keys too."""

    metric: str
    kind: str
    name: str


class Series(BaseModel):
    """A series in a serialisable form (dicts keyed by tuples do not cross Temporal)."""

    metric: Metric
    scope_kind: ScopeKind
    scope_name: str
    points: list[MetricPoint] = Field(default_factory=list)

    @property
    def key(self) -> SeriesKey:
        """This series' key."""
        return SeriesKey(self.metric, self.scope_kind, self.scope_name)


def scope_labels(kind: ScopeKind | str, name: str) -> dict[str, str]:
    """Labels of a scope: ``{"scope": name}`` plus ``pipeline``/``task`` or ``source``."""
    kind = ScopeKind(kind)
    labels = {"scope": name}
    if kind == ScopeKind.PIPELINE:
        labels["pipeline"] = name
    elif kind == ScopeKind.TASK:
        pipeline, _, task = name.partition("/")
        labels["pipeline"] = pipeline
        labels["task"] = task or pipeline
    else:
        labels["source"] = name
    return labels


# --- evaluation results ----------------------------------------------------------------------


class Breach(BaseModel):
    """A scope whose latest point breaches a rule."""

    scope_kind: ScopeKind
    scope_name: str
    value: float
    at: datetime
    since: datetime
    expected: float | None = None
    score: float | None = None
    reason: str


class IncidentStatus(StrEnum):
    """Incident lifecycle."""

    OPEN = "open"
    RESOLVED = "resolved"


class IncidentChange(BaseModel):
    """An incident to open, update or resolve, identified by fingerprint and opening time."""

    fingerprint: str
    rule: str
    metric: Metric
    severity: Severity
    labels: dict[str, str] = Field(default_factory=dict)
    opened_at: datetime
    at: datetime
    summary: str
    breaches: list[Breach] = Field(default_factory=list)
    resolution: str = ""


class AlertKind(StrEnum):
    """Why an alert is sent."""

    OPENED = "opened"
    REMINDER = "reminder"
    RESOLVED = "resolved"
    TEST = "test"


class Alert(BaseModel):
    """What notifiers render; self-contained so it can be sent from any activity."""

    kind: AlertKind
    rule: str
    fingerprint: str
    severity: Severity
    metric: Metric
    labels: dict[str, str] = Field(default_factory=dict)
    title: str
    summary: str
    breaches: list[Breach] = Field(default_factory=list)
    at: datetime
    incident_opened_at: datetime | None = None
    notifiers: list[str] = Field(default_factory=list)
    incident_id: int | None = None
    alert_id: int | None = None


class OpenIncident(BaseModel):
    """What the evaluator remembers about an open incident."""

    rule: str
    metric: Metric
    severity: Severity
    labels: dict[str, str] = Field(default_factory=dict)
    opened_at: datetime
    last_breach_at: datetime
    alerts_sent: int = 0


class AlertState(BaseModel):
    """The evaluator's memory between evaluations; small, so it can be stored or carried.

    Attributes:
        open: Open incidents by fingerprint.
        last_alert_at: When the last alert of each fingerprint went out (for cooldowns).
        silenced: Fingerprints resolved by hand while still breaching: not reopened until
            their scopes have been seen back to normal.
    """

    open: dict[str, OpenIncident] = Field(default_factory=dict)
    last_alert_at: dict[str, datetime] = Field(default_factory=dict)
    silenced: list[str] = Field(default_factory=list)


class EvaluationResult(BaseModel):
    """What one evaluation decided, and the state to pass to the next one."""

    incidents_opened: list[IncidentChange] = Field(default_factory=list)
    incidents_updated: list[IncidentChange] = Field(default_factory=list)
    incidents_resolved: list[IncidentChange] = Field(default_factory=list)
    alerts_to_send: list[Alert] = Field(default_factory=list)
    state: AlertState = Field(default_factory=AlertState)


class Incident(BaseModel):
    """A stored incident."""

    id: int
    fingerprint: str
    rule: str
    metric: Metric
    severity: Severity
    status: IncidentStatus
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str
    breaches: list[Breach] = Field(default_factory=list)
    opened_at: datetime
    updated_at: datetime
    last_breach_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    alerts_sent: int = 0


class Delivery(BaseModel):
    """The outcome of sending one alert through one notifier."""

    notifier: str
    type: str
    ok: bool
    attempts: int
    detail: str = ""
    error: str = ""


class AlertRecord(BaseModel):
    """A stored alert with what happened to it per notifier."""

    id: int
    incident_id: int | None
    fingerprint: str
    rule: str
    kind: AlertKind
    severity: Severity
    at: datetime
    title: str
    deliveries: list[Delivery] = Field(default_factory=list)
