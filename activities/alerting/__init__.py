"""Alerting: anomaly detectors, rule evaluation with grouping and cooldowns, and notifiers.

The Monitor calls, from an activity, for each scan::

    state = store.reconcile(state)                    # incidents resolved by hand
    result = evaluate(rules, series, state, now)      # pure
    alerts = store.apply(result)                      # incidents + alert rows, ids filled in
    for alert in alerts:                              # one activity per (alert, notifier)
        delivery = await notifiers[name].send(alert)  # raises NotifierError subclasses
        store.record_delivery(alert.alert_id, delivery)

``evaluate(rules, series, state, now) -> EvaluationResult``
    *rules*: ``Sequence[AlertRule]`` (``load_rule_file(path).rules``).
    *series*: ``Mapping[(metric, scope kind, scope name), Sequence[MetricPoint]]``; keys are
    :class:`~models.incidents.SeriesKey` or plain string tuples, e.g.
    ``("task_latency_seconds", "task", "orders/extract")`` (a task's scope name is
    ``<pipeline>/<task>``), ``("error_rate", "pipeline", "orders")``,
    ``("records", "source", "books")``, ``("source_health", "source", "books")`` with
    values from ``SOURCE_HEALTH_LEVELS``. Points should be time-ordered (they are sorted
    anyway); points after ``now`` are ignored. Only the *latest* point of each series is
    judged; earlier points are the detector's history and date the breach.
    *state*: the previous result's ``state`` (``AlertState()`` the first time); a small
    pydantic model, safe to store or carry through continue-as-new.
    *now*: timezone-aware evaluation time.

    Pure and deterministic. The result lists

    * ``incidents_opened`` — a group started firing (breaching for at least the rule's
      ``for``) and had no open incident;
    * ``incidents_updated`` — an open incident's group still breaches (current breaches);
    * ``incidents_resolved`` — every scope of the group with data is back to normal and
      ``resolve_after`` has passed since the last breach (``auto_resolve: true``, the
      default), or the incident's rule was removed or its ``group_by`` changed; a group
      with no data at all stays open;
    * ``alerts_to_send`` — ``opened`` when an incident opens, ``reminder`` while it goes on,
      never more than one per fingerprint per ``cooldown``; ``resolved`` only with
      ``notify_resolved: true`` and if an alert went out for the incident.

Grouping: a rule's breaching scopes with equal ``group_by`` labels form one incident whose
fingerprint is ``rule{label=value,...}`` (just ``rule`` with no ``group_by``), so a flood of
failures across many tasks of one pipeline, grouped by ``pipeline``, is one incident and
one alert per cooldown.

Resolution by hand (``mendline incidents resolve ID``) is picked up by
``IncidentStore.reconcile``: the fingerprint is *silenced* — not reopened while its scopes
still breach — until it has been seen back to normal once.
"""

from __future__ import annotations

from activities.alerting.detectors import Detection, judge, scan
from activities.alerting.errors import (
    AlertingError,
    NotifierError,
    NotifierRejectedError,
    NotifierUnavailableError,
    as_application_error,
)
from activities.alerting.evaluate import evaluate, fingerprint, sample_alert
from activities.alerting.notifiers import (
    LogNotifier,
    Notifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifier,
    build_notifiers,
    deliver,
)
from activities.alerting.smtp import EmailNotifier

__all__ = [
    "AlertingError",
    "Detection",
    "EmailNotifier",
    "LogNotifier",
    "Notifier",
    "NotifierError",
    "NotifierRejectedError",
    "NotifierUnavailableError",
    "SlackNotifier",
    "WebhookNotifier",
    "as_application_error",
    "build_notifier",
    "build_notifiers",
    "deliver",
    "evaluate",
    "fingerprint",
    "judge",
    "sample_alert",
    "scan",
]
