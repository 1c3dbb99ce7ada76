"""The heuristic agent: a deterministic playbook recommender with multi-factor scoring.

Each action of the allowlist gets a score, the sum of what six factors say about it:

1. **diagnosis** — the failure kind from error type, class, HTTP status and message words
   (:mod:`activities.agent.diagnosis`), the strongest factor;
2. **HTTP status** — 429 asks for patience, 401/403 for a person, 5xx for a later retry;
3. **attempts** — many attempts already made count against retrying again;
4. **predicted risk** — a failure likely to persist favours intervention over waiting;
5. **source health and history** — a quarantined or dead source, a day without success,
   a duration or volume far from normal;
6. **runbook match** — the retrieved runbooks' recommended actions, by similarity.

Actions that need a source (``repair_source``, ``rollback``, ``quarantine``) are out of
the running when the failure has none. The best score wins (ties go to the less risky
action); confidence grows with its margin over the runner-up and with the diagnosis'
certainty; the justification names every factor that moved the winner. Same input, same
plan: no clock, no randomness.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from activities.agent.diagnosis import Diagnosis, FailureKind, diagnose
from activities.agent.retrieval import Retrieved
from models.remediation import (
    RISK_ORDER,
    Evidence,
    FailureContext,
    Features,
    Prediction,
    RemediationAction,
    RemediationPlan,
    RiskLevel,
)

A = RemediationAction
K = FailureKind
MODEL = "playbook-v1"
"""Recorded as the heuristic's model name in plan attempts."""

ACTION_RISK: dict[RemediationAction, RiskLevel] = {
    A.RETRY: RiskLevel.LOW,
    A.RETRY_WITH_BACKOFF: RiskLevel.LOW,
    A.ALERT: RiskLevel.LOW,
    A.ESCALATE: RiskLevel.LOW,
    A.SKIP: RiskLevel.MEDIUM,
    A.TUNE: RiskLevel.MEDIUM,
    A.REPAIR_SOURCE: RiskLevel.MEDIUM,
    A.ROLLBACK: RiskLevel.HIGH,
    A.QUARANTINE: RiskLevel.HIGH,
}
"""The least risk level a plan may claim for each action: waiting and telling people
change nothing; skipping drops a batch; tuning and repairs change what runs; a rollback
or quarantine takes data or a scraper version out of service."""

NEEDS_SOURCE = frozenset({A.REPAIR_SOURCE, A.ROLLBACK, A.QUARANTINE})

PRIORS: dict[FailureKind, dict[RemediationAction, float]] = {
    K.TRANSIENT_NETWORK: {A.RETRY_WITH_BACKOFF: 3.0, A.RETRY: 2.0, A.ALERT: 0.5},
    K.RATE_LIMITED: {A.RETRY_WITH_BACKOFF: 4.0, A.TUNE: 1.0, A.RETRY: -1.0},
    K.AUTH_EXPIRED: {A.ESCALATE: 4.0, A.ALERT: 1.5, A.RETRY: -2.0, A.RETRY_WITH_BACKOFF: -1.0},
    K.BLOCKED: {A.ESCALATE: 3.5, A.QUARANTINE: 2.0, A.RETRY: -2.0, A.RETRY_WITH_BACKOFF: -1.0},
    K.UPSTREAM_OUTAGE: {A.ALERT: 3.5, A.ESCALATE: 2.5, A.RETRY_WITH_BACKOFF: 0.5, A.RETRY: -1.0},
    K.SCHEMA_DRIFT: {A.REPAIR_SOURCE: 4.0, A.ESCALATE: 2.5, A.ALERT: 1.0, A.RETRY: -1.0},
    K.LAYOUT_CHANGE: {A.REPAIR_SOURCE: 4.0, A.ESCALATE: 2.0, A.ROLLBACK: 1.5, A.RETRY: -1.0},
    K.TIMEOUT: {A.TUNE: 3.5, A.RETRY_WITH_BACKOFF: 2.0, A.RETRY: 1.0},
    K.RESOURCE_EXHAUSTION: {A.TUNE: 4.0, A.ESCALATE: 1.5, A.RETRY: -1.0},
    K.CONFIG_ERROR: {A.ESCALATE: 4.0, A.ALERT: 2.0, A.RETRY: -2.0, A.RETRY_WITH_BACKOFF: -1.0},
    K.UNKNOWN: {A.RETRY: 1.5, A.ESCALATE: 1.5, A.ALERT: 1.0},
}
LONG_OUTAGE_PRIORS: dict[RemediationAction, float] = {
    A.ESCALATE: 3.5,
    A.ALERT: 2.5,
    A.RETRY_WITH_BACKOFF: 0.0,
    A.RETRY: -1.0,
}
"""An outage of a day or more, or of a quarantined source: a person must act."""
DISK_FULL_PRIORS: dict[RemediationAction, float] = {A.ESCALATE: 4.5, A.TUNE: 1.0, A.RETRY: -1.0}
BAD_DATA_PRIORS: dict[str, dict[RemediationAction, float]] = {
    "low": {A.SKIP: 3.5, A.ALERT: 2.5, A.RETRY: -2.0},
    "high": {A.ALERT: 3.5, A.SKIP: 1.5, A.QUARANTINE: 1.0, A.RETRY: -2.0},
}
STATUS_WEIGHTS: dict[int, dict[RemediationAction, float]] = {
    429: {A.RETRY_WITH_BACKOFF: 1.0, A.RETRY: -1.0},
    401: {A.ESCALATE: 1.0, A.RETRY: -0.5},
    403: {A.ESCALATE: 1.0, A.RETRY: -0.5},
    404: {A.ESCALATE: 0.5},
    410: {A.ESCALATE: 0.5},
    408: {A.TUNE: 0.5},
}
MANY_ATTEMPTS = 5
HIGH_RISK = 0.7
LOW_RISK = 0.3
LONG_DOWN_HOURS = 24.0
SLOW_ZSCORE = 3.0
VOLUME_GROWTH = 1.0
VOLUME_COLLAPSE = -0.8
RUNBOOK_WEIGHT = 1.5
HEALTH_NAMES = ("ACTIVE", "DEGRADED", "QUARANTINED", "DEAD")

_TIMEOUT_KEYS = ("timeout_seconds", "timeout", "timeout_s")
_BATCH_KEYS = ("batch_size", "chunk_size", "page_size")


@dataclass
class Scoreboard:
    """Scores per action and, per action, the factors that moved it."""

    scores: dict[RemediationAction, float] = field(default_factory=lambda: defaultdict(float))
    reasons: dict[RemediationAction, list[tuple[str, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, factor: str, weights: Mapping[RemediationAction, float]) -> None:
        for action, weight in weights.items():
            if weight:
                self.scores[action] += weight
                self.reasons[action].append((factor, weight))

    def ranking(self, allowed: set[RemediationAction]) -> list[tuple[RemediationAction, float]]:
        """Allowed actions, best first; ties go to the less risky, then the earlier action."""
        order = list(RemediationAction)
        candidates = [
            (a, round(self.scores.get(a, 0.0), 3)) for a in RemediationAction if a in allowed
        ]
        return sorted(
            candidates, key=lambda c: (-c[1], RISK_ORDER[ACTION_RISK[c[0]]], order.index(c[0]))
        )


def _number(params: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = params.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _score(
    context: FailureContext,
    features: Features,
    prediction: Prediction,
    diagnosis: Diagnosis,
    retrieved: Retrieved,
) -> Scoreboard:
    board = Scoreboard()
    if diagnosis.kind is K.BAD_DATA:
        priors = BAD_DATA_PRIORS[diagnosis.severity or "high"]
    elif diagnosis.long_outage:
        priors = LONG_OUTAGE_PRIORS
    elif diagnosis.disk_full:
        priors = DISK_FULL_PRIORS
    else:
        priors = PRIORS[diagnosis.kind]
    board.add(
        f"diagnosis {diagnosis.kind.value} ({'; '.join(diagnosis.signals) or 'no signal'})", priors
    )

    if diagnosis.status in STATUS_WEIGHTS:
        board.add(f"HTTP status {diagnosis.status}", STATUS_WEIGHTS[diagnosis.status])
    elif diagnosis.status is not None and diagnosis.status >= 500:
        board.add(f"HTTP status {diagnosis.status} (server side)", {A.RETRY_WITH_BACKOFF: 0.5})

    attempts = max(context.attempts, features.attempts)
    if attempts >= MANY_ATTEMPTS:
        board.add(
            f"{attempts} attempts already made",
            {A.RETRY: -1.5, A.RETRY_WITH_BACKOFF: -0.75, A.ESCALATE: 0.5, A.ALERT: 0.5},
        )
    elif attempts <= 2:
        board.add(f"only {attempts} attempt(s) so far", {A.RETRY: 0.25})

    if prediction.risk >= HIGH_RISK:
        board.add(
            f"predicted risk {prediction.risk:.2f} (likely to persist without intervention)",
            {A.RETRY: -1.0, A.RETRY_WITH_BACKOFF: -0.5, A.ESCALATE: 0.5, A.REPAIR_SOURCE: 0.5},
        )
    elif prediction.risk <= LOW_RISK:
        board.add(
            f"predicted risk {prediction.risk:.2f} (likely to clear by itself)",
            {A.RETRY: 0.5, A.RETRY_WITH_BACKOFF: 0.5},
        )

    if context.source:
        health = int(min(3, max(0, round(features.source_health))))
        name = HEALTH_NAMES[health]
        if health >= 3:
            board.add(
                f"source health {name} (repairs exhausted)",
                {A.RETRY: -1.0, A.RETRY_WITH_BACKOFF: -1.0, A.REPAIR_SOURCE: -1.0, A.ESCALATE: 1.0},
            )
        elif health == 2:
            board.add(
                f"source health {name}",
                {A.RETRY: -1.0, A.RETRY_WITH_BACKOFF: -1.0, A.ESCALATE: 1.0},
            )
        elif health == 1 and diagnosis.kind in (K.SCHEMA_DRIFT, K.LAYOUT_CHANGE):
            board.add(f"source health {name} after bad runs", {A.REPAIR_SOURCE: 0.5})

    if features.hours_since_success >= LONG_DOWN_HOURS:
        board.add(
            f"no success for {features.hours_since_success:g} h",
            {A.ESCALATE: 1.5, A.RETRY: -0.5},
        )
    if features.duration_zscore >= SLOW_ZSCORE:
        board.add(
            f"duration z-score {features.duration_zscore:.1f} (much slower than usual)",
            {A.TUNE: 1.0},
        )
    if features.volume_change >= VOLUME_GROWTH:
        board.add(f"data volume up {features.volume_change:.0%}", {A.TUNE: 0.75})
    elif features.volume_change <= VOLUME_COLLAPSE and context.source:
        board.add(f"data volume down {-features.volume_change:.0%}", {A.REPAIR_SOURCE: 0.75})

    for rank, hit in enumerate(retrieved.runbooks[:2]):
        strength = RUNBOOK_WEIGHT * min(1.0, hit.score) * (1.0 if rank == 0 else 0.4)
        weights = {
            action: strength * (1.0 if i == 0 else 0.4)
            for i, action in enumerate(hit.runbook.actions)
        }
        board.add(f"runbook {hit.runbook.id} (similarity {hit.score:.2f})", weights)
    return board


def _parameters(
    action: RemediationAction, context: FailureContext, features: Features, diagnosis: Diagnosis
) -> tuple[dict[str, float | int], str]:
    """The chosen action's parameters and why they are what they are."""
    attempts = max(context.attempts, features.attempts, 1)
    if action is A.RETRY_WITH_BACKOFF:
        if diagnosis.kind is K.RATE_LIMITED:
            base = max(300.0, 2 * (diagnosis.retry_after or 0.0))
            delay = min(3600.0, base * (2 if attempts >= 3 else 1))
            why = "at least five minutes for a rate limit" + (
                f", twice Retry-After {diagnosis.retry_after:g}s" if diagnosis.retry_after else ""
            )
        elif diagnosis.kind is K.UPSTREAM_OUTAGE:
            delay, why = 1800.0, "half an hour for an outage"
        else:
            delay = min(900.0, 30.0 * 2 ** (min(attempts, 5) - 1))
            delay = max(delay, diagnosis.retry_after or 0.0)
            why = f"exponential backoff after {attempts} attempt(s)"
        return {"delay_seconds": delay}, f"delay_seconds={delay:g} ({why})"
    if action is A.TUNE:
        params: dict[str, float | int] = {}
        whys = []
        timeout = _number(context.params, _TIMEOUT_KEYS)
        batch = _number(context.params, _BATCH_KEYS)
        if diagnosis.kind is K.TIMEOUT or (
            diagnosis.kind is not K.RESOURCE_EXHAUSTION and batch is None
        ):
            current = timeout or 60.0
            params["timeout_seconds"] = float(min(3600.0, max(30.0, current * 2)))
            whys.append(f"timeout_seconds={params['timeout_seconds']:g} (twice {current:g}s)")
        if diagnosis.kind is not K.TIMEOUT or (batch and features.volume_change >= VOLUME_GROWTH):
            current = batch or 1000.0
            params["batch_size"] = max(1, int(current // 2))
            whys.append(f"batch_size={params['batch_size']} (half of {current:g})")
        return params, "; ".join(whys)
    return {}, ""


def _cited(action: RemediationAction, retrieved: Retrieved) -> list[str]:
    """Runbooks the plan used: those recommending the action, else the closest one."""
    used = [hit.runbook.id for hit in retrieved.runbooks if action in hit.runbook.actions]
    return used or retrieved.runbook_ids[:1]


def _what(context: FailureContext) -> str:
    if context.kind == "source" or (context.source and not context.task):
        return f"source {context.source}"
    name = f"{context.pipeline}/{context.task}" if context.pipeline else str(context.task or "task")
    return f"task {name}" + (f" (source {context.source})" if context.source else "")


def recommend(
    context: FailureContext,
    features: Features,
    prediction: Prediction,
    retrieved: Retrieved,
) -> RemediationPlan:
    """The heuristic plan for a failure (deterministic; always meets the contract).

    Args:
        context: What failed (its message already redacted by the caller, or not: the
            heuristic sends nothing anywhere).
        features: Telemetry features.
        prediction: The failure predictor's output.
        retrieved: Runbooks and incidents retrieved for the failure.
    """
    diagnosis = diagnose(context, features)
    board = _score(context, features, prediction, diagnosis, retrieved)
    allowed = set(RemediationAction) - (NEEDS_SOURCE if not context.source else set())
    ranking = board.ranking(allowed)
    (action, score), (runner_up, second) = ranking[0], ranking[1]
    margin = max(0.0, score - second)
    confidence = (0.5 + 0.45 * (1 - math.exp(-margin / 1.5))) * (0.6 + 0.4 * diagnosis.certainty)
    parameters, parameter_why = _parameters(action, context, features, diagnosis)

    what = _what(context)
    status = f" (HTTP {diagnosis.status})" if diagnosis.status else ""
    factors = [
        f"{factor} {'+' if weight > 0 else '−'}{abs(weight):.2f}"
        for factor, weight in board.reasons.get(action, [])
    ]
    rationale = (
        f"Chose {action.value} (score {score:.2f}; runner-up {runner_up.value} {second:.2f}). "
        f"Factors for {action.value}: {'; '.join(factors) or 'none beyond the default'}."
        + (f" Parameters: {parameter_why}." if parameter_why else "")
        + (
            f" Similar past incidents: {', '.join(f'#{i}' for i in retrieved.incident_ids)}."
            if retrieved.incidents
            else ""
        )
    )
    summary = f"{what} failed with {context.error_type}{status}; propose {action.value}"
    cause = f"{diagnosis.description[0].upper()}{diagnosis.description[1:]}"
    if diagnosis.signals:
        cause += f": {'; '.join(diagnosis.signals)}"
    return RemediationPlan(
        summary=summary[:500],
        suspected_cause=cause[:1000],
        action=action,
        parameters=parameters,
        confidence=round(min(0.95, max(0.05, confidence)), 2),
        risk_level=ACTION_RISK[action],
        rationale=rationale[:4000],
        evidence=Evidence(runbooks=_cited(action, retrieved), incidents=retrieved.incident_ids),
    )
