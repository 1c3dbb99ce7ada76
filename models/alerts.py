"""Alert rules and notifiers as written in a rules file (YAML), and the vocabulary they share
with incidents: metrics, scope kinds, severities, operators, group labels.

A *rule* watches one metric over the scopes of one kind (pipelines, tasks or sources) and
breaches either when ``value <operator> threshold`` or when a detector (robust z-score,
EWMA) finds the latest point anomalous. Breaching scopes are grouped by ``group_by`` into
*incidents*; an incident's *fingerprint* is the rule name plus its group labels, e.g.
``task-latency{pipeline=orders}``.

Related modules: :mod:`models.alert_rules` loads a rules file with located errors;
:mod:`models.incidents` holds series, incidents and alerts; :mod:`activities.alerting`
evaluates rules and sends alerts.
"""

from __future__ import annotations

import operator as _op
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.durations import Seconds
from models.health import HealthState

# Re-exported: notifier specs used to live here and callers import them from this module.
from models.notifiers import BUILTIN_NOTIFIERS as BUILTIN_NOTIFIERS
from models.notifiers import EmailNotifierSpec as EmailNotifierSpec
from models.notifiers import LogNotifierSpec as LogNotifierSpec
from models.notifiers import NotifierSpec as NotifierSpec
from models.notifiers import SlackNotifierSpec as SlackNotifierSpec
from models.notifiers import WebhookNotifierSpec as WebhookNotifierSpec

RULE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
NOTIFIER_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"

NOTIFIER_UNAVAILABLE_ERROR = "NotifierUnavailableError"
"""Activity error type: a notifier endpoint is down or timed out (retryable)."""
NOTIFIER_REJECTED_ERROR = "NotifierRejectedError"
"""Activity error type: the endpoint refused the alert, e.g. HTTP 400 (never retried)."""


class Metric(StrEnum):
    """What a rule watches. The Monitor produces the series; see ``METRIC_SCOPES``."""

    TASK_LATENCY_SECONDS = "task_latency_seconds"
    ERROR_RATE = "error_rate"
    RETRIES = "retries"
    RECORDS = "records"
    SOURCE_HEALTH = "source_health"


class ScopeKind(StrEnum):
    """What a series is measured over."""

    PIPELINE = "pipeline"
    TASK = "task"
    SOURCE = "source"


METRIC_SCOPES: dict[Metric, frozenset[ScopeKind]] = {
    Metric.TASK_LATENCY_SECONDS: frozenset({ScopeKind.PIPELINE, ScopeKind.TASK}),
    Metric.ERROR_RATE: frozenset({ScopeKind.PIPELINE, ScopeKind.TASK, ScopeKind.SOURCE}),
    Metric.RETRIES: frozenset({ScopeKind.PIPELINE, ScopeKind.TASK}),
    Metric.RECORDS: frozenset({ScopeKind.SOURCE, ScopeKind.TASK, ScopeKind.PIPELINE}),
    Metric.SOURCE_HEALTH: frozenset({ScopeKind.SOURCE}),
}
"""The scope kinds each metric is measured over."""

SOURCE_HEALTH_LEVELS: dict[HealthState, float] = {
    HealthState.ACTIVE: 0.0,
    HealthState.DEGRADED: 1.0,
    HealthState.QUARANTINED: 2.0,
    HealthState.DEAD: 3.0,
}
"""``source_health`` values: a rule may name the state (``threshold: QUARANTINED``)."""


class Severity(StrEnum):
    """How urgent an alert is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Operator(StrEnum):
    """Comparison of a threshold rule: ``value <operator> threshold`` breaches."""

    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="

    def holds(self, value: float, threshold: float) -> bool:
        """Whether ``value <self> threshold``."""
        return _COMPARE[self](value, threshold)


_COMPARE: dict[Operator, Callable[[float, float], bool]] = {
    Operator.GT: _op.gt,
    Operator.GE: _op.ge,
    Operator.LT: _op.lt,
    Operator.LE: _op.le,
    Operator.EQ: _op.eq,
    Operator.NE: _op.ne,
}


class GroupLabel(StrEnum):
    """Labels ``group_by`` can use; a series carries those its scope kind defines."""

    SCOPE = "scope"
    PIPELINE = "pipeline"
    TASK = "task"
    SOURCE = "source"


GROUP_LABELS_OF: dict[ScopeKind, frozenset[GroupLabel]] = {
    ScopeKind.PIPELINE: frozenset({GroupLabel.SCOPE, GroupLabel.PIPELINE}),
    ScopeKind.TASK: frozenset({GroupLabel.SCOPE, GroupLabel.PIPELINE, GroupLabel.TASK}),
    ScopeKind.SOURCE: frozenset({GroupLabel.SCOPE, GroupLabel.SOURCE}),
}


class Direction(StrEnum):
    """Which departures from normal a detector reports."""

    UP = "up"
    DOWN = "down"
    BOTH = "both"


# --- rules -----------------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Detector(_Spec):
    """What both detectors share (documented on each)."""

    window: int = Field(50, ge=5, le=10_000)
    threshold: float = Field(3.5, gt=0)
    min_points: int = Field(10, ge=3)
    direction: Direction = Direction.BOTH
    min_deviation: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _enough_window(self) -> Self:
        if self.min_points > self.window:
            raise ValueError(f"min_points ({self.min_points}) exceeds window ({self.window})")
        return self


class ZScoreDetector(_Detector):
    """Robust z-score: distance from the median of the last ``window`` points in MADs.

    Attributes:
        window: Points of history the median and MAD are taken over.
        threshold: Robust z-score (``|x - median| / (1.4826 * MAD)``) above which a point
            is anomalous; 3.5 is the usual cut-off for the modified z-score.
        min_points: No verdict until this many points of history exist.
        direction: ``up`` (only increases), ``down`` or ``both``.
        min_deviation: Departures smaller than this (in the metric's unit) never count.
    """

    kind: Literal["zscore"]
    window: int = Field(50, ge=5, le=10_000)


class EwmaDetector(_Detector):
    """EWMA: an exponentially weighted mean and spread, robustly started and updated.

    Attributes:
        alpha: Weight of the newest point (0 < alpha ≤ 1); about ``1/alpha`` points of
            memory, so a lasting shift becomes the new normal after that many points.
        window: Points of history the average runs over.
        threshold: Distance from the EWMA mean, in EWMA standard deviations, above which a
            point is anomalous.
        min_points: Points used to start the average (median and MAD); no verdict before.
        direction: ``up``, ``down`` or ``both``.
        min_deviation: Departures smaller than this (in the metric's unit) never count.
    """

    kind: Literal["ewma"]
    alpha: float = Field(0.1, gt=0, le=1)
    window: int = Field(100, ge=5, le=10_000)


DetectorSpec = Annotated[ZScoreDetector | EwmaDetector, Field(discriminator="kind")]


class RuleScope(_Spec):
    """The series a rule looks at: every scope of ``kind``, or those matching ``name``.

    ``name`` is a shell-style pattern (``orders``, ``orders/*``, ``shop-*``).
    """

    kind: ScopeKind
    name: str | None = Field(None, min_length=1, max_length=300)


class AlertRule(_Spec):
    """One alert rule.

    Exactly one condition: ``operator`` with ``threshold``, or ``detector``.

    Attributes:
        name: Unique in its file; part of every incident fingerprint.
        metric: The metric watched.
        scope: Which series of the metric.
        operator: Threshold comparison (``>``, ``>=``, ``<``, ``<=``, ``==``, ``!=``).
        threshold: The bound (for ``source_health``, a state name also works).
        detector: Anomaly detector instead of a fixed threshold.
        severity: ``info``, ``warning`` or ``critical``.
        for_: (YAML ``for``) how long a scope must breach before it fires.
        cooldown: At most one alert per incident fingerprint per this long; while an
            incident goes on, a reminder goes out once per cooldown.
        resolve_after: How long after its last breach an incident whose scopes are all
            back to normal is resolved automatically (0: at the first normal evaluation).
        auto_resolve: Resolve automatically; when false only ``incidents resolve`` does.
        notify_resolved: Also send an alert when the incident resolves automatically.
        group_by: Labels that split breaching scopes into separate incidents; empty means
            one incident for the whole rule.
        notifiers: Names of notifiers of the same file (``log`` is built in).
        remediate: An incident this rule opens also starts a ``Remediation``
            (``remediation/incident/<id>``): the agent explains it and proposes an action,
            gated by the remediation policy like any other.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=RULE_NAME_PATTERN)
    description: str = ""
    metric: Metric
    scope: RuleScope
    operator: Operator | None = None
    threshold: float | None = None
    detector: DetectorSpec | None = None
    severity: Severity = Severity.WARNING
    for_: Seconds = Field(0.0, alias="for")
    cooldown: Seconds = 3600.0
    resolve_after: Seconds = 0.0
    auto_resolve: bool = True
    notify_resolved: bool = False
    group_by: list[GroupLabel] = Field(default_factory=list)
    notifiers: list[str] = Field(default_factory=lambda: ["log"], min_length=1)
    remediate: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("scope"), str):
            data["scope"] = {"kind": data["scope"]}
        if isinstance(data.get("group_by"), str):
            data["group_by"] = [data["group_by"]]
        if isinstance(data.get("notifiers"), str):
            data["notifiers"] = [data["notifiers"]]
        threshold = data.get("threshold")
        if data.get("metric") == Metric.SOURCE_HEALTH and isinstance(threshold, str):
            state = threshold.strip().upper()
            if state in HealthState.__members__:
                data["threshold"] = SOURCE_HEALTH_LEVELS[HealthState(state)]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        problems = rule_problems(
            metric=self.metric,
            scope_kind=self.scope.kind,
            has_operator=self.operator is not None,
            has_threshold=self.threshold is not None,
            has_detector=self.detector is not None,
            group_by=list(self.group_by),
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def condition_text(self) -> str:
        """The condition in a few words: ``> 0.2`` or ``zscore(window=50, threshold=3.5)``."""
        if self.detector is not None:
            d = self.detector
            extra = f", alpha={d.alpha}" if isinstance(d, EwmaDetector) else ""
            side = "" if d.direction == Direction.BOTH else f", {d.direction}"
            return f"{d.kind}(window={d.window}, threshold={d.threshold}{extra}{side})"
        threshold = f"{self.threshold:g}"
        if self.metric == Metric.SOURCE_HEALTH:
            names = {level: state for state, level in SOURCE_HEALTH_LEVELS.items()}
            threshold = names.get(self.threshold or 0.0, threshold)
        return f"{self.operator} {threshold}"


class RuleFile(_Spec):
    """A rules file: named notifiers and the rules that use them."""

    notifiers: dict[str, NotifierSpec] = Field(default_factory=dict)
    rules: list[AlertRule] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # A section left with only comments in it is null in YAML: read it as empty.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    def notifier(self, name: str) -> NotifierSpec:
        """The notifier called ``name`` (declared, or built in)."""
        found = self.notifiers.get(name) or BUILTIN_NOTIFIERS.get(name)
        if found is None:
            raise KeyError(f"no notifier {name!r} in the rules file")
        return found

    def rule(self, name: str) -> AlertRule:
        """The rule called ``name``."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(f"no rule {name!r} in the rules file")


def rule_problems(
    *,
    metric: Any,
    scope_kind: Any,
    has_operator: bool,
    has_threshold: bool,
    has_detector: bool,
    group_by: list[Any],
) -> list[str]:
    """What is wrong with how a rule's fields fit together.

    Takes raw values too (checks whose inputs are not valid are skipped), so a rules file
    with bad fields still gets these problems reported in the same pass.
    """
    problems: list[str] = []
    if (has_operator or has_threshold) and has_detector:
        problems.append("give either operator + threshold or detector, not both")
    elif not has_detector and not (has_operator and has_threshold):
        missing = "threshold" if has_operator else "operator" if has_threshold else ""
        problems.append(
            f"missing {missing!r} (a threshold rule needs both)"
            if missing
            else "a rule needs a condition: operator and threshold (e.g. operator: '>', "
            "threshold: 0.2) or a detector (e.g. detector: {kind: zscore})"
        )
    if (
        metric not in Metric.__members__.values()
        or scope_kind not in ScopeKind.__members__.values()
    ):
        return problems
    metric, scope_kind = Metric(metric), ScopeKind(scope_kind)
    if scope_kind not in METRIC_SCOPES[metric]:
        kinds = ", ".join(sorted(METRIC_SCOPES[metric]))
        problems.append(
            f"metric {metric} is not measured per {scope_kind} (use scope kind: {kinds})"
        )
    labels = {str(label) for label in GroupLabel}
    foreign = [
        str(g) for g in group_by if str(g) in labels and g not in GROUP_LABELS_OF[scope_kind]
    ]
    if foreign:
        allowed = ", ".join(sorted(GROUP_LABELS_OF[scope_kind]))
        problems.append(
            f"group_by {', '.join(foreign)} is not a label of {scope_kind} scopes (use: {allowed})"
        )
    return problems
