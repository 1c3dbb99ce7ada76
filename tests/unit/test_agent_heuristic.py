"""The heuristic agent's factors, parameters and justification, one behaviour at a time
(the labelled suite in tests/scenarios/ measures its accuracy)."""

from __future__ import annotations

from typing import Any

from activities.agent import ACTION_RISK, load_runbooks, recommend, retrieve
from activities.agent.diagnosis import FailureKind, diagnose
from activities.agent.retrieval import Query, Retrieved
from models.remediation import (
    FailureContext,
    Features,
    Prediction,
    RemediationAction,
    RemediationPlan,
    RiskLevel,
)

A = RemediationAction
NOTHING = Retrieved(runbooks=[], incidents=[])


def prediction(risk: float) -> Prediction:
    return Prediction(model="test", version=1, sha256="0" * 64, risk=risk)


def context(**values: Any) -> FailureContext:
    base: dict[str, Any] = {"pipeline": "p", "task": "t", "task_type": "http", "attempts": 2}
    return FailureContext.model_validate(base | values)


def with_runbooks(ctx: FailureContext) -> Retrieved:
    return retrieve(
        Query(text=f"{ctx.error_type} {ctx.message}", error_class=ctx.error_class),
        load_runbooks(),
    )


def test_rate_limit_waits_at_least_twice_retry_after() -> None:
    ctx = context(
        error_type="HttpStatusError",
        message="GET https://x/y returned HTTP 429 Too Many Requests (Retry-After: 400)",
    )
    plan = recommend(ctx, Features(), prediction(0.5), NOTHING)
    assert plan.action == A.RETRY_WITH_BACKOFF
    assert plan.parameters == {"delay_seconds": 800.0}
    assert plan.risk_level == RiskLevel.LOW


def test_network_backoff_grows_with_attempts() -> None:
    def delay(attempts: int) -> float:
        ctx = context(
            error_type="FetchConnectError", message="connection refused", attempts=attempts
        )
        plan = recommend(ctx, Features(attempts=attempts), prediction(0.3), NOTHING)
        assert plan.action == A.RETRY_WITH_BACKOFF
        return float(plan.parameters["delay_seconds"])

    assert delay(1) < delay(3) < delay(5) <= 900


def test_the_same_network_error_becomes_an_outage_after_hours_without_success() -> None:
    ctx = context(
        error_type="FetchConnectError", error_class="network", message="connection refused"
    )
    blip = recommend(ctx, Features(hours_since_success=0.5), prediction(0.3), NOTHING)
    outage = recommend(
        ctx, Features(hours_since_success=9, recent_failure_rate=0.9), prediction(0.9), NOTHING
    )
    long_outage = recommend(
        ctx, Features(hours_since_success=40, recent_failure_rate=1.0), prediction(0.9), NOTHING
    )
    assert blip.action == A.RETRY_WITH_BACKOFF
    assert outage.action == A.ALERT
    assert long_outage.action == A.ESCALATE
    assert "upstream_outage" in outage.rationale


def test_drift_is_repaired_only_when_there_is_a_source() -> None:
    drift: dict[str, Any] = {
        "error_type": "SelectorDriftError",
        "message": "selector matched nothing",
    }
    with_source = recommend(
        context(source="books", task_type="scrape", **drift), Features(), prediction(0.8), NOTHING
    )
    without = recommend(context(**drift), Features(), prediction(0.8), NOTHING)
    assert with_source.action == A.REPAIR_SOURCE and with_source.risk_level == RiskLevel.MEDIUM
    assert without.action == A.ESCALATE


def test_tune_doubles_the_timeout_and_halves_the_batch() -> None:
    timeout = recommend(
        context(
            error_type="FetchTimeoutError", message="timed out after 45s", params={"timeout": 45}
        ),
        Features(duration_zscore=4),
        prediction(0.6),
        NOTHING,
    )
    memory = recommend(
        context(error_type="MemoryError", message="MemoryError", params={"batch_size": 801}),
        Features(),
        prediction(0.6),
        NOTHING,
    )
    assert timeout.action == A.TUNE and timeout.parameters == {"timeout_seconds": 90.0}
    assert memory.action == A.TUNE and memory.parameters == {"batch_size": 400}
    assert timeout.risk_level == memory.risk_level == RiskLevel.MEDIUM


def test_many_attempts_and_a_dead_source_count_against_retrying() -> None:
    ctx = context(error_type="RuntimeError", message="weird", source="s", task_type="scrape")
    fresh = recommend(ctx, Features(attempts=1), prediction(0.1), NOTHING)
    worn = recommend(
        ctx.model_copy(update={"attempts": 9}),
        Features(attempts=9, source_health=3),
        prediction(0.9),
        NOTHING,
    )
    assert fresh.action == A.RETRY
    assert worn.action == A.ESCALATE
    assert "9 attempts already made" in worn.rationale
    assert "source health DEAD" in worn.rationale


def test_the_justification_names_the_factors_and_the_cited_runbook() -> None:
    ctx = context(
        error_type="HttpStatusError",
        message="GET https://x returned HTTP 401 Unauthorized: 'token expired'",
    )
    retrieved = with_runbooks(ctx)
    plan = recommend(ctx, Features(), prediction(0.9), retrieved)
    assert plan.action == A.ESCALATE
    assert "auth-expiry" in plan.evidence.runbooks
    for factor in (
        "diagnosis auth_expired",
        "HTTP status 401",
        "predicted risk 0.90",
        "runbook auth-expiry",
    ):
        assert factor in plan.rationale
    assert "credentials" in plan.suspected_cause.lower()


def test_every_action_has_a_risk_floor_in_order() -> None:
    assert ACTION_RISK[A.RETRY] == ACTION_RISK[A.RETRY_WITH_BACKOFF] == RiskLevel.LOW
    assert ACTION_RISK[A.SKIP] == ACTION_RISK[A.TUNE] == RiskLevel.MEDIUM
    assert ACTION_RISK[A.ROLLBACK] == ACTION_RISK[A.QUARANTINE] == RiskLevel.HIGH
    assert set(ACTION_RISK) == set(RemediationAction)


def test_plans_always_meet_the_contract_even_for_empty_input() -> None:
    plan = recommend(FailureContext(), Features(), prediction(0.5), NOTHING)
    RemediationPlan.model_validate(plan.model_dump())
    assert plan.action in (A.RETRY, A.ESCALATE)
    assert diagnose(FailureContext(), Features()).kind is FailureKind.UNKNOWN


def test_a_captcha_behind_403_is_a_block_not_an_expired_credential() -> None:
    ctx = context(
        error_type="FetchHttpStatusError",
        message="https://x returned HTTP 403 Forbidden; anti-bot challenge or captcha",
        source="shop",
        task_type="scrape",
    )
    assert diagnose(ctx, Features()).kind is FailureKind.BLOCKED
    assert recommend(ctx, Features(), prediction(0.9), NOTHING).action == A.ESCALATE
