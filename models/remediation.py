"""Contracts of the remediation loop: failure → features → prediction → plan → verdict →
(approval) → execution → verification → audit.

The ``Remediation`` workflow (id ``remediation/<pipeline run id>/<task>``, or
``remediation/source/<name>/<n>`` for sources) runs these steps as activities; its
``decision`` query returns :class:`DecisionState`. Only the actions of
:class:`RemediationAction` exist: an agent (heuristic, OpenAI-compatible or Ollama) can only
*propose* one of them, the policy decides whether it may run, and the executor runs it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RemediationAction(StrEnum):
    """Every action the executor knows; nothing else can ever be executed."""

    RETRY = "retry"
    RETRY_WITH_BACKOFF = "retry_with_backoff"
    SKIP = "skip"
    ALERT = "alert"
    TUNE = "tune"
    REPAIR_SOURCE = "repair_source"
    ROLLBACK = "rollback"
    QUARANTINE = "quarantine"
    ESCALATE = "escalate"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


RISK_ORDER = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2, RiskLevel.CRITICAL: 3}

ACTION_PARAMETERS: dict[RemediationAction, dict[str, tuple[type, float | None, float | None]]] = {
    RemediationAction.RETRY: {},
    RemediationAction.RETRY_WITH_BACKOFF: {"delay_seconds": (float, 1.0, 86400.0)},
    RemediationAction.SKIP: {},
    RemediationAction.ALERT: {},
    RemediationAction.TUNE: {
        "timeout_seconds": (float, 1.0, 86400.0),
        "max_attempts": (int, 1.0, 20.0),
        "batch_size": (int, 1.0, 1_000_000.0),
    },
    RemediationAction.REPAIR_SOURCE: {},
    RemediationAction.ROLLBACK: {},
    RemediationAction.QUARANTINE: {},
    RemediationAction.ESCALATE: {},
}
"""The parameters each action accepts: name → (type, minimum, maximum). A plan or an
edited approval with any other parameter, or a value out of range, is refused."""


def parameter_problems(action: RemediationAction, params: dict[str, Any]) -> list[str]:
    """Why ``params`` do not fit ``action``'s schema (empty: they do)."""
    schema = ACTION_PARAMETERS[action]
    problems = []
    for name, value in params.items():
        if name not in schema:
            allowed = ", ".join(sorted(schema)) or "none"
            problems.append(f"{action.value} takes no parameter {name!r} (allowed: {allowed})")
            continue
        kind, low, high = schema[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{name} must be a number, got {value!r}")
            continue
        if kind is int and not float(value).is_integer():
            problems.append(f"{name} must be a whole number, got {value!r}")
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            problems.append(f"{name}={value!r} is outside {low:g}..{high:g}")
    return problems


# --- what failed ---------------------------------------------------------------------------


class FailureContext(BaseModel):
    """What failed, as the remediation sees it (error text is redacted before any prompt).

    Attributes:
        kind: ``task`` (a pipeline task that failed after its retries) or ``source``.
        pipeline: The pipeline (tasks).
        run_id: The pipeline run's workflow id (tasks).
        task: The task's name (tasks).
        task_type: The task's type (tasks).
        source: The source (sources, or a ``scrape`` task's source).
        error_type: The final error's type.
        error_class: The fetch layer's class of it, when known.
        message: The final error's message.
        attempts: Attempts made.
        params: The task's rendered parameters (for ``tune``).
        incident_id: The incident that started it, when the Monitor did.
        at: When it failed.
    """

    kind: Literal["task", "source"] = "task"
    pipeline: str | None = None
    run_id: str | None = None
    task: str | None = None
    task_type: str | None = None
    source: str | None = None
    error_type: str = "UnknownError"
    error_class: str | None = None
    message: str = ""
    attempts: int = 1
    params: dict[str, Any] = Field(default_factory=dict)
    incident_id: int | None = None
    at: datetime | None = None


class Features(BaseModel):
    """The predictor's inputs, computed from telemetry."""

    recent_failure_rate: float = 0.0
    duration_zscore: float = 0.0
    attempts: int = 1
    error_class: str = "unknown"
    hours_since_success: float = 0.0
    volume_change: float = 0.0
    source_health: float = 0.0
    runs_seen: int = 0


class Prediction(BaseModel):
    """The failure predictor's output."""

    model: str
    version: int
    sha256: str
    risk: float = Field(ge=0, le=1)
    """Probability the failure persists without intervention."""
    top_factors: list[str] = Field(default_factory=list)


# --- the plan --------------------------------------------------------------------------------


class Evidence(BaseModel):
    """What a plan cites."""

    runbooks: list[str] = Field(default_factory=list)
    incidents: list[int] = Field(default_factory=list)


class RemediationPlan(BaseModel):
    """An agent's proposal (the contract every provider's output must meet)."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=500)
    suspected_cause: str = Field(min_length=1, max_length=1000)
    action: RemediationAction
    parameters: dict[str, Any] = Field(default_factory=dict)
    confidence: float = Field(ge=0, le=1)
    risk_level: RiskLevel
    rationale: str = Field(min_length=1, max_length=4000)
    evidence: Evidence = Field(default_factory=Evidence)


class PlanAttempt(BaseModel):
    """One call to a provider, as recorded."""

    provider: str
    model: str = ""
    ok: bool
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw: str = ""
    """The provider's raw answer (truncated), kept for the audit."""


class PlanOutcome(BaseModel):
    """Output of ``plan_remediation``: the plan used and how it was obtained.

    Attributes:
        plan: The plan the decision engine judges.
        provider: Who wrote it (``heuristic`` when the configured provider failed).
        attempts: Every provider call (first ask, re-ask), with token usage.
        replaced: Why the configured provider's plan was replaced by the heuristic one.
        runbooks: Runbooks retrieved for the context (ids, best first).
        incidents: Past incidents retrieved (ids, best first).
    """

    plan: RemediationPlan
    provider: str
    attempts: list[PlanAttempt] = Field(default_factory=list)
    replaced: str | None = None
    runbooks: list[str] = Field(default_factory=list)
    incidents: list[int] = Field(default_factory=list)


# --- the decision ----------------------------------------------------------------------------

VerdictKind = Literal["execute", "needs_approval", "block"]


class Verdict(BaseModel):
    """The policy engine's decision about a plan.

    Attributes:
        verdict: ``execute`` (may run alone), ``needs_approval`` or ``block``.
        reasons: Why, one sentence each.
        approver_roles: Roles allowed to approve (``needs_approval``).
        approvers: People holding those roles (from the policy file).
        timeout_seconds: How long to wait for approval.
        on_timeout: The action taken when nobody decides (``escalate`` by default).
        policy_sha256: The policy file's hash, for the audit.
    """

    verdict: VerdictKind
    reasons: list[str] = Field(default_factory=list)
    approver_roles: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    timeout_seconds: float = 3600.0
    on_timeout: RemediationAction = RemediationAction.ESCALATE
    policy_sha256: str = ""


class ExecutionResult(BaseModel):
    """What the executor did."""

    action: RemediationAction
    parameters: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    ok: bool = True
    detail: str = ""
    task_outcome: Literal["retry", "skip", "fail"] | None = None
    """For task failures: what the pipeline does next (retry the task, skip it, fail it)."""


class RemediationInput(BaseModel):
    """Input of ``Remediation``."""

    failure: FailureContext
    environment: str = "production"
    dry_run: bool = False


class RemediationStep(StrEnum):
    STARTED = "STARTED"
    PREDICTING = "PREDICTING"
    PLANNING = "PLANNING"
    DECIDING = "DECIDING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    EXECUTING = "EXECUTING"
    VERIFYING = "VERIFYING"
    DONE = "DONE"


class DecisionState(BaseModel):
    """The ``decision`` query of ``Remediation`` (and its result)."""

    workflow_id: str
    step: RemediationStep = RemediationStep.STARTED
    failure: FailureContext
    environment: str = "production"
    dry_run: bool = False
    features: Features | None = None
    prediction: Prediction | None = None
    planning: PlanOutcome | None = None
    verdict: Verdict | None = None
    approved_by: str | None = None
    approval_reason: str = ""
    original_plan: RemediationPlan | None = None
    """Set when an approver edited the plan's parameters: the plan as proposed."""
    executed: ExecutionResult | None = None
    outcome: str = ""
    audit_ids: list[int] = Field(default_factory=list)


# --- audit -----------------------------------------------------------------------------------


class AuditEntry(BaseModel):
    """One entry of the tamper-evident audit log.

    ``sha256`` is the SHA-256 of the canonical JSON of every other field (``prev_sha256``
    included), so changing, removing or reordering any entry breaks the chain after it.
    """

    id: int
    at: datetime
    workflow_id: str
    kind: str
    """``plan``, ``verdict``, ``approval``, ``execution``, ``outcome``…"""
    actor: str
    detail: dict[str, Any] = Field(default_factory=dict)
    prev_sha256: str
    sha256: str


class AuditRecord(BaseModel):
    """Input of ``record_audit``: an entry to append (id and hashes are the log's)."""

    workflow_id: str
    kind: str
    actor: str
    detail: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str
    """Unique per logical entry (``<workflow id>#<kind>#<n>``): a retried activity appends
    nothing twice."""


# --- activity inputs and outputs ------------------------------------------------------------


class PredictOutcome(BaseModel):
    """Output of ``predict_failure``."""

    features: Features
    prediction: Prediction
    search_attributes: bool = True


class PlanRequest(BaseModel):
    """Input of ``plan_remediation``."""

    failure: FailureContext
    features: Features
    prediction: Prediction


class DecideRequest(BaseModel):
    """Input of ``decide_remediation``."""

    plan: RemediationPlan
    prediction: Prediction
    environment: str = "production"


class TokenRequest(BaseModel):
    """Input of ``approval_tokens``: the hashes of the approvers' approval tokens."""

    request_id: str
    approvers: list[str] = Field(default_factory=list)


class ExecuteRequest(BaseModel):
    """Input of ``execute_remediation``."""

    failure: FailureContext
    action: RemediationAction
    parameters: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    summary: str = ""
    workflow_id: str = ""
