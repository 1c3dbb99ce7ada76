"""Contracts of the ``Monitor`` workflow (started by the Temporal Schedule ``mendline-monitor``).

Each scan: ``collect_metrics`` builds the metric series from the run tables → ``evaluate_alerts``
judges them with the alert rules (opening, updating and resolving incidents, storing the
evaluator's state) → ``send_alert`` delivers each alert through each of its notifiers, with
retries and backoff, in parallel; a notifier that is down fails only its own delivery.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from models.incidents import Alert, Delivery, Series

MONITOR_SCHEDULE_ID = "mendline-monitor"
"""The Temporal Schedule that starts the Monitor (``mendline monitor enable``)."""


class MonitorInput(BaseModel):
    """Input of ``Monitor``.

    Attributes:
        lookback_seconds: How far back the series reach (the detectors' history).
        bucket_seconds: Width of the buckets of rate and count series (error rate, retries).
        rules_path: The alert rules file (None: ``MENDLINE_ALERT_RULES`` of the worker).
    """

    lookback_seconds: float = Field(86400.0, gt=0, le=90 * 86400)
    bucket_seconds: float = Field(300.0, gt=0, le=86400)
    rules_path: str | None = None


class CollectRequest(BaseModel):
    """Input of ``collect_metrics``."""

    lookback_seconds: float
    bucket_seconds: float
    now: datetime


class EvaluateRequest(BaseModel):
    """Input of ``evaluate_alerts``."""

    series: list[Series]
    rules_path: str | None = None
    now: datetime


class IncidentRef(BaseModel):
    """An incident opened by a rule with ``remediate: true``: what its Remediation needs."""

    id: int
    fingerprint: str
    rule: str
    metric: str
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = ""


class EvaluateOutcome(BaseModel):
    """Output of ``evaluate_alerts``: what changed and the alerts to deliver (ids filled in)."""

    rules: int
    remediate: list[IncidentRef] = Field(default_factory=list)
    opened: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    resolved: list[str] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)


class SendRequest(BaseModel):
    """Input of ``send_alert``: one alert through one notifier."""

    alert: Alert
    notifier: str
    rules_path: str | None = None


class DeliveryRecord(BaseModel):
    """Input of ``record_delivery``: a delivery that finally failed."""

    alert_id: int | None
    delivery: Delivery


class MonitorReport(BaseModel):
    """The result of one ``Monitor`` scan.

    Attributes:
        at: When the scan ran.
        series: Series scanned.
        points: Points in them.
        rules: Rules evaluated.
        opened: Fingerprints of incidents opened.
        updated: Fingerprints of incidents still going on.
        resolved: Fingerprints of incidents resolved.
        deliveries: One per (alert, notifier).
        remediations: Remediation workflows started for opened incidents.
    """

    at: datetime
    series: int = 0
    points: int = 0
    rules: int = 0
    opened: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    resolved: list[str] = Field(default_factory=list)
    deliveries: list[Delivery] = Field(default_factory=list)
    remediations: list[str] = Field(default_factory=list)
