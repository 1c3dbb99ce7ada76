"""Rule evaluation: from metric series to incidents to open, update or resolve and alerts.

:func:`evaluate` is pure and deterministic (no I/O, no clock, no randomness): the same
rules, series, state and ``now`` always give the same result, so it can run in an activity
or a workflow and be retried freely. See :mod:`activities.alerting` for the contract.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from activities.alerting.detectors import Detection, judge
from models.alerts import AlertRule, ScopeKind
from models.incidents import (
    FINGERPRINT_LENGTH,
    Alert,
    AlertKind,
    AlertState,
    Breach,
    EvaluationResult,
    IncidentChange,
    MetricPoint,
    OpenIncident,
    SeriesKey,
    scope_labels,
)

MAX_BREACHES_LISTED = 10
"""An alert's summary names this many breaching scopes, then says how many more."""
MAX_RUN_LOOKBACK = 1000
"""How far back a breach's start is searched for (points)."""

SeriesMap = Mapping[SeriesKey | tuple[str, str, str], Sequence[MetricPoint]]


@dataclass
class _Member:
    """One series of a group, as judged now."""

    kind: ScopeKind
    name: str
    breach: Breach | None
    firing: bool


@dataclass
class _Group:
    labels: dict[str, str]
    members: list[_Member] = field(default_factory=list)

    @property
    def breaches(self) -> list[Breach]:
        return [m.breach for m in self.members if m.breach is not None]

    @property
    def firing(self) -> bool:
        return any(m.firing for m in self.members)

    @property
    def breaching(self) -> bool:
        return any(m.breach is not None for m in self.members)


def fingerprint(rule_name: str, labels: Mapping[str, str]) -> str:
    """An incident's identity: ``rule{label=value,...}``, or the rule name without labels.

    Fingerprints longer than ``FINGERPRINT_LENGTH`` keep their start and end in a hash.
    """
    if not labels:
        return rule_name
    inner = ",".join(f"{key}={labels[key]}" for key in sorted(labels))
    text = f"{rule_name}{{{inner}}}"
    if len(text) <= FINGERPRINT_LENGTH:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: FINGERPRINT_LENGTH - 18]}#{digest}}}"


def evaluate(
    rules: Sequence[AlertRule],
    series: SeriesMap,
    state: AlertState,
    now: datetime,
) -> EvaluationResult:
    """Evaluate ``rules`` on ``series`` at ``now``, given what earlier evaluations left.

    Args:
        rules: The rules in force (a :class:`RuleFile`'s ``rules``).
        series: Time-ordered points per ``(metric, scope kind, scope name)``.
        state: The ``state`` of the previous result (``AlertState()`` the first time).
        now: The evaluation time (timezone-aware; ``workflow.now()`` in a workflow).

    Returns:
        Incidents to open, update and resolve, alerts to send, and the next state.
    """
    result = EvaluationResult()
    next_state = state.model_copy(deep=True)
    by_name = {rule.name: rule for rule in rules}
    for rule in rules:
        groups = _groups(rule, series, now)
        own = {fp for fp, entry in next_state.open.items() if entry.rule == rule.name}
        for fp in sorted(set(groups) | own):
            _decide(rule, fp, groups.get(fp), next_state, result, now)
    for fp, entry in sorted(next_state.open.items()):
        current = by_name.get(entry.rule)
        if current is None:
            _resolve_orphan(fp, entry, "its rule was removed", next_state, result, now)
        elif set(entry.labels) != {str(label) for label in current.group_by}:
            _resolve_orphan(fp, entry, "its rule's group_by changed", next_state, result, now)
    next_state.silenced = [fp for fp in next_state.silenced if _rule_of(fp) in by_name]
    _forget_expired_cooldowns(next_state, by_name, now)
    result.state = next_state
    return result


# --- judging series ---------------------------------------------------------------------------


def _groups(rule: AlertRule, series: SeriesMap, now: datetime) -> dict[str, _Group]:
    """The rule's series, judged and grouped by fingerprint."""
    groups: dict[str, _Group] = {}
    for key, points in sorted(series.items(), key=lambda item: tuple(map(str, item[0]))):
        metric, kind, name = (str(part) for part in key)
        if metric != rule.metric or kind != rule.scope.kind:
            continue
        if rule.scope.name is not None and not fnmatch.fnmatchcase(name, rule.scope.name):
            continue
        # NaN and infinities (a rate of 0/0) say nothing about normal: leave them out.
        usable = (p for p in points if p.at <= now and math.isfinite(p.value))
        ordered = sorted(usable, key=lambda p: p.at)
        if not ordered:
            continue
        labels = scope_labels(kind, name)
        group_labels = {str(g): labels[g] for g in rule.group_by}
        breach = _breach(rule, ScopeKind(kind), name, ordered)
        firing = breach is not None and now - breach.since >= timedelta(seconds=rule.for_)
        group = groups.setdefault(fingerprint(rule.name, group_labels), _Group(group_labels))
        group.members.append(_Member(ScopeKind(kind), name, breach, firing))
    return groups


def _breach(
    rule: AlertRule, kind: ScopeKind, name: str, points: Sequence[MetricPoint]
) -> Breach | None:
    """The breach of the series' latest point, dated from the first point of its run."""
    values = [p.value for p in points]
    last = _verdict(rule, values, len(values) - 1)
    if last is None:
        return None
    since = points[-1].at
    for index in range(len(values) - 2, max(-1, len(values) - 2 - MAX_RUN_LOOKBACK), -1):
        if _verdict(rule, values, index) is None:
            break
        since = points[index].at
    return Breach(
        scope_kind=kind,
        scope_name=name,
        value=values[-1],
        at=points[-1].at,
        since=since,
        expected=last.expected if rule.detector is not None else rule.threshold,
        score=last.score if rule.detector is not None else None,
        reason=_reason(rule, kind, name, last),
    )


def _verdict(rule: AlertRule, values: Sequence[float], index: int) -> Detection | None:
    """The point's verdict if it breaches the rule, else None."""
    value = values[index]
    if rule.detector is None:
        assert rule.operator is not None and rule.threshold is not None
        if rule.operator.holds(value, rule.threshold):
            return Detection(value, rule.threshold, 1.0, value - rule.threshold, True)
        return None
    start = max(0, index - rule.detector.window)
    verdict = judge(values[start:index], value, rule.detector)
    return verdict if verdict is not None and verdict.anomalous else None


def _number(value: float) -> str:
    return f"{value:.4g}"


def _reason(rule: AlertRule, kind: ScopeKind, name: str, verdict: Detection) -> str:
    where = f"{kind} {name}"
    if rule.detector is None:
        return f"{rule.metric} is {_number(verdict.value)} on {where} ({rule.operator} {_number(rule.threshold or 0)})"
    side = "above" if verdict.score > 0 else "below"
    how = (
        f"its {rule.detector.kind} average {_number(verdict.average)} is"
        if verdict.average is not None
        else "that is"
    )
    return (
        f"{rule.metric} is {_number(verdict.value)} on {where}: {how} {abs(verdict.score):.1f} "
        f"spreads {side} the usual {_number(verdict.expected)} ({rule.detector.kind})"
    )


# --- incidents and alerts ---------------------------------------------------------------------


def _decide(
    rule: AlertRule,
    fp: str,
    group: _Group | None,
    state: AlertState,
    result: EvaluationResult,
    now: datetime,
) -> None:
    """Open, update or resolve the incident ``fp`` and queue its alerts."""
    entry = state.open.get(fp)
    breaching = group is not None and group.breaching
    if fp in state.silenced:
        if group is not None and not breaching:
            state.silenced.remove(fp)  # seen back to normal: may open again next time
        if entry is None:
            return
    if group is not None and group.firing and entry is None:
        entry = OpenIncident(
            rule=rule.name,
            metric=rule.metric,
            severity=rule.severity,
            labels=group.labels,
            opened_at=now,
            last_breach_at=now,
        )
        state.open[fp] = entry
        change = _change(rule, fp, entry, group.breaches, now)
        result.incidents_opened.append(change)
        _maybe_alert(rule, fp, AlertKind.OPENED, change, state, result, now)
    elif group is not None and breaching and entry is not None:
        entry.last_breach_at = now
        change = _change(rule, fp, entry, group.breaches, now)
        result.incidents_updated.append(change)
        if group.firing:
            _maybe_alert(rule, fp, AlertKind.REMINDER, change, state, result, now)
    elif group is not None and group.members and entry is not None and rule.auto_resolve:
        if now - entry.last_breach_at < timedelta(seconds=rule.resolve_after):
            return
        change = _change(rule, fp, entry, [], now, resolution="back to normal")
        result.incidents_resolved.append(change)
        del state.open[fp]
        if rule.notify_resolved and entry.alerts_sent:
            result.alerts_to_send.append(_alert(rule, fp, AlertKind.RESOLVED, change))


def _change(
    rule: AlertRule,
    fp: str,
    entry: OpenIncident,
    breaches: list[Breach],
    now: datetime,
    resolution: str = "",
) -> IncidentChange:
    if resolution:
        summary = f"{rule.name}: {resolution}"
    else:
        listed = [b.reason for b in breaches[:MAX_BREACHES_LISTED]]
        more = len(breaches) - len(listed)
        summary = "; ".join(listed) + (f"; and {more} more" if more else "")
    return IncidentChange(
        fingerprint=fp,
        rule=rule.name,
        metric=rule.metric,
        severity=rule.severity,
        labels=dict(entry.labels),
        opened_at=entry.opened_at,
        at=now,
        summary=summary,
        breaches=breaches,
        resolution=resolution,
    )


def _maybe_alert(
    rule: AlertRule,
    fp: str,
    kind: AlertKind,
    change: IncidentChange,
    state: AlertState,
    result: EvaluationResult,
    now: datetime,
) -> None:
    """Queue an alert unless one for ``fp`` went out within the rule's cooldown."""
    last = state.last_alert_at.get(fp)
    if last is not None and now - last < timedelta(seconds=rule.cooldown):
        return
    state.last_alert_at[fp] = now
    state.open[fp].alerts_sent += 1
    result.alerts_to_send.append(_alert(rule, fp, kind, change))


def _alert(rule: AlertRule, fp: str, kind: AlertKind, change: IncidentChange) -> Alert:
    scopes = sorted({b.scope_name for b in change.breaches})
    what = ", ".join(scopes[:3]) + (f" and {len(scopes) - 3} more" if len(scopes) > 3 else "")
    headline = {
        AlertKind.OPENED: f"{rule.metric} {rule.condition_text()} on {what}",
        AlertKind.REMINDER: f"still {rule.metric} {rule.condition_text()} on {what}",
        AlertKind.RESOLVED: "resolved: back to normal",
        AlertKind.TEST: "test alert",
    }[kind]
    description = f"{rule.description}\n" if rule.description else ""
    return Alert(
        kind=kind,
        rule=rule.name,
        fingerprint=fp,
        severity=rule.severity,
        metric=rule.metric,
        labels=dict(change.labels),
        title=f"[{rule.severity.upper()}] {rule.name}: {headline}",
        summary=description + change.summary,
        breaches=change.breaches,
        at=change.at,
        incident_opened_at=change.opened_at,
        notifiers=list(rule.notifiers),
    )


def sample_alert(rule: AlertRule, now: datetime) -> Alert:
    """A ``test`` alert for ``rule``, as ``mendline alerts test`` sends it."""
    change = IncidentChange(
        fingerprint=fingerprint(rule.name, {str(g): "test" for g in rule.group_by}),
        rule=rule.name,
        metric=rule.metric,
        severity=rule.severity,
        labels={str(g): "test" for g in rule.group_by},
        opened_at=now,
        at=now,
        summary=(
            f"This is a test of rule {rule.name!r} ({rule.metric} {rule.condition_text()} "
            f"on {rule.scope.kind} {rule.scope.name or '*'}); nothing is wrong."
        ),
    )
    alert = _alert(rule, change.fingerprint, AlertKind.TEST, change)
    return alert.model_copy(update={"title": f"[TEST] {rule.name}: test alert"})


def _resolve_orphan(
    fp: str,
    entry: OpenIncident,
    why: str,
    state: AlertState,
    result: EvaluationResult,
    now: datetime,
) -> None:
    """Resolve an open incident no rule produces any more."""
    del state.open[fp]
    result.incidents_resolved.append(
        IncidentChange(
            fingerprint=fp,
            rule=entry.rule,
            metric=entry.metric,
            severity=entry.severity,
            labels=dict(entry.labels),
            opened_at=entry.opened_at,
            at=now,
            summary=f"{entry.rule}: resolved because {why}",
            resolution=why,
        )
    )


def _rule_of(fp: str) -> str:
    """The rule name a fingerprint starts with (rule names contain no ``{``)."""
    return fp.split("{", 1)[0]


def _forget_expired_cooldowns(
    state: AlertState, rules: Mapping[str, AlertRule], now: datetime
) -> None:
    """Drop last-alert times that no longer hold anything back, keeping the state small."""
    for fp, at in list(state.last_alert_at.items()):
        if fp in state.open:
            continue
        rule = rules.get(_rule_of(fp))
        if rule is None or now - at >= timedelta(seconds=rule.cooldown):
            del state.last_alert_at[fp]
