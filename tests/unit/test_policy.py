"""The decision engine and the policy file: verdicts with reasons naming the numbers,
resolution of per-environment overrides, the shipped example policy, and located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from activities.policy import decide
from models.policy import Policy, PolicyFileError, load_policy, load_policy_text
from models.remediation import (
    ACTION_PARAMETERS,
    RISK_ORDER,
    Prediction,
    RemediationAction,
    RemediationPlan,
    RiskLevel,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "policy.yaml"

POLICY = textwrap.dedent(
    """\
    approvers:
      alice: [operator]
      bob: [operator, sre]
    approval: {timeout: 1h, on_timeout: escalate}
    defaults:
      min_confidence: 0.5
      max_risk_level: medium
      approver_roles: [operator]
      actions:
        retry: {max_predicted_risk: 0.8}
        rollback: {require_approval: true, approver_roles: [sre]}
        quarantine: {allowed: false}
    environments:
      production:
        actions:
          tune: {min_confidence: 0.6, block_above: high}
        approval: {timeout: 30m, on_timeout: alert}
    """
)


def plan(
    action: str = "retry", confidence: float = 0.9, risk: str = "low", **params: Any
) -> RemediationPlan:
    return RemediationPlan(
        summary=f"{action} it",
        suspected_cause="a transient network error",
        action=RemediationAction(action),
        parameters=params,
        confidence=confidence,
        risk_level=RiskLevel(risk),
        rationale="the runbook says so",
    )


def prediction(risk: float = 0.2) -> Prediction:
    return Prediction(model="builtin", version=1, sha256="0" * 64, risk=risk)


@pytest.fixture
def policy() -> Policy:
    return load_policy_text(POLICY, "policy.yaml")


# --- verdicts ---------------------------------------------------------------------------------


def test_a_confident_low_risk_retry_executes_and_says_why(policy: Policy) -> None:
    verdict = decide(plan(), prediction(0.3), "production", policy)
    assert verdict.verdict == "execute"
    assert verdict.reasons == [
        "retry in production may run alone: confidence 0.90 ≥ 0.50, risk low ≤ medium, "
        "predicted risk 0.30 ≤ 0.80"
    ]
    assert verdict.approvers == [] and verdict.approver_roles == []
    assert verdict.policy_sha256 == policy.sha256 and len(policy.sha256) == 64


def test_low_confidence_needs_approval_with_the_numbers(policy: Policy) -> None:
    verdict = decide(plan("tune", 0.42, timeout_seconds=120), prediction(), "production", policy)
    assert verdict.verdict == "needs_approval"
    assert verdict.reasons == ["confidence 0.42 < 0.60 required for tune in production"]
    assert verdict.approver_roles == ["operator"]
    assert verdict.approvers == ["alice", "bob"]
    # The production approval settings override the top-level ones.
    assert (verdict.timeout_seconds, verdict.on_timeout) == (1800.0, RemediationAction.ALERT)


def test_the_environment_override_applies_only_there(policy: Policy) -> None:
    staging = decide(plan("tune", 0.55), prediction(), "staging", policy)
    assert staging.verdict == "execute"
    assert (staging.timeout_seconds, staging.on_timeout) == (3600.0, RemediationAction.ESCALATE)


def test_every_reason_is_listed(policy: Policy) -> None:
    verdict = decide(plan("retry", 0.3, "high"), prediction(0.95), "production", policy)
    assert verdict.verdict == "needs_approval"
    assert verdict.reasons == [
        "risk high > medium allowed for retry in production",
        "confidence 0.30 < 0.50 required for retry in production",
        "predicted risk 0.95 > 0.80 allowed for retry in production (model builtin v1)",
    ]


def test_numbers_that_round_alike_are_shown_apart(policy: Policy) -> None:
    verdict = decide(plan("retry", 0.4999), prediction(), "production", policy)
    assert verdict.reasons == ["confidence 0.4999 < 0.5000 required for retry in production"]


def test_require_approval_names_the_roles_and_their_holders(policy: Policy) -> None:
    verdict = decide(plan("rollback", 1.0), prediction(0.0), "production", policy)
    assert verdict.verdict == "needs_approval"
    assert verdict.reasons == ["rollback in production always needs approval"]
    assert (verdict.approver_roles, verdict.approvers) == (["sre"], ["bob"])


def test_block_above_blocks_instead_of_asking(policy: Policy) -> None:
    verdict = decide(plan("tune", 0.99, "critical"), prediction(), "production", policy)
    assert verdict.verdict == "block"
    assert verdict.reasons == [
        "risk critical > high, the most tune in production may carry (block_above)"
    ]


def test_a_disallowed_action_is_blocked(policy: Policy) -> None:
    verdict = decide(plan("quarantine", 1.0), prediction(), "production", policy)
    assert (verdict.verdict, verdict.reasons) == (
        "block",
        ["policy does not allow quarantine in production"],
    )


def test_parameters_outside_the_schema_are_blocked(policy: Policy) -> None:
    verdict = decide(plan("tune", 0.99, max_attempts=500), prediction(), "production", policy)
    assert verdict.verdict == "block"
    assert verdict.reasons == ["invalid parameters for tune: max_attempts=500 is outside 1..20"]


def test_needing_approval_with_no_role_blocks() -> None:
    policy = load_policy_text("defaults: {min_confidence: 0.9}\n")
    verdict = decide(plan("retry", 0.5), prediction(), "production", policy)
    assert verdict.verdict == "block"
    assert verdict.reasons == [
        "confidence 0.50 < 0.90 required for retry in production",
        "no approver role is configured for retry in production, so nobody may approve",
    ]


def test_an_empty_policy_lets_confident_low_risk_plans_run() -> None:
    policy = load_policy_text("")
    assert decide(plan(), prediction(), "anywhere", policy).verdict == "execute"
    assert decide(plan(risk="high"), prediction(), "anywhere", policy).verdict == "block"


def test_decide_is_pure(policy: Policy) -> None:
    a = decide(plan("tune", 0.42), prediction(0.5), "production", policy)
    b = decide(plan("tune", 0.42), prediction(0.5), "production", policy)
    assert a == b


# --- the shipped policy -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(EXAMPLE)


@pytest.mark.parametrize("action", ["retry", "retry_with_backoff", "alert"])
def test_example_routine_actions_run_alone_in_production_when_confident(
    example: Policy, action: str
) -> None:
    params = {"delay_seconds": 60} if action == "retry_with_backoff" else {}
    verdict = decide(plan(action, 0.8, "low", **params), prediction(0.4), "production", example)
    assert verdict.verdict == "execute", verdict.reasons


@pytest.mark.parametrize("action", ["tune", "skip", "repair_source"])
def test_example_changes_need_approval_in_production(example: Policy, action: str) -> None:
    verdict = decide(plan(action, 1.0, "low"), prediction(0.0), "production", example)
    assert verdict.verdict == "needs_approval"
    assert f"{action} in production always needs approval" in verdict.reasons
    assert verdict.approvers == ["alice", "bob"]
    staging = decide(plan(action, 0.9, "low"), prediction(0.0), "staging", example)
    assert staging.verdict == "execute", staging.reasons


@pytest.mark.parametrize("action", ["rollback", "quarantine"])
def test_example_rollback_and_quarantine_need_an_sre(example: Policy, action: str) -> None:
    for environment in ("production", "staging", "development"):
        verdict = decide(plan(action, 1.0, "low"), prediction(0.0), environment, example)
        assert verdict.verdict == "needs_approval"
        assert (verdict.approver_roles, verdict.approvers) == (["sre"], ["bob"])


def test_example_escalate_is_always_allowed(example: Policy) -> None:
    for risk in RiskLevel:
        verdict = decide(plan("escalate", 0.0, risk.value), prediction(1.0), "production", example)
        assert verdict.verdict == "execute", verdict.reasons


def test_example_timeout_escalates(example: Policy) -> None:
    verdict = decide(plan("tune", 1.0), prediction(), "production", example)
    assert (verdict.timeout_seconds, verdict.on_timeout) == (3600.0, RemediationAction.ESCALATE)


def test_nothing_riskier_than_its_action_allows_ever_executes(example: Policy) -> None:
    """Every action × risk level × confidence × predicted risk × environment: a plan whose
    risk level exceeds the action's maximum never gets ``execute``."""
    checked = 0
    for environment in ("production", "staging", "development", "unknown"):
        for action in RemediationAction:
            rule = example.rule(action, environment)
            params = {"delay_seconds": 30} if action == RemediationAction.RETRY_WITH_BACKOFF else {}
            assert set(params) <= set(ACTION_PARAMETERS[action])
            for risk in RiskLevel:
                for confidence in (0.0, 0.5, 0.75, 1.0):
                    for predicted in (0.0, 0.5, 0.95):
                        verdict = decide(
                            plan(action.value, confidence, risk.value, **params),
                            prediction(predicted),
                            environment,
                            example,
                        )
                        checked += 1
                        if RISK_ORDER[risk] > RISK_ORDER[rule.max_risk_level]:
                            assert verdict.verdict != "execute", (environment, action, risk)
                        if verdict.verdict == "execute":
                            assert confidence >= rule.min_confidence
                            assert predicted <= rule.max_predicted_risk
                            assert not rule.require_approval
    assert checked == 4 * len(RemediationAction) * 4 * 4 * 3


# --- located errors -------------------------------------------------------------------------------

BAD = textwrap.dedent(
    """\
    approvers:
      alice: [operator]
    approval:
      timeout: soon
      on_timeout: rollback
    defaults:
      min_confidnce: 0.5
      actions:
        retri: {min_confidence: 0.2}
        tune: {max_risk_level: hihg}
    environments:
      production:
        actions:
          skip: {min_confidence: 1.5}
        approvel: {}
    """
)


def test_every_problem_is_reported_with_its_line() -> None:
    with pytest.raises(PolicyFileError) as caught:
        load_policy_text(BAD, "policy.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid policy file (7 problems):"
    assert lines[1].startswith("  - policy.yaml:4: approval.timeout: expected a duration")
    assert lines[2:] == [
        "  - policy.yaml:5: approval.on_timeout: on_timeout runs without approval, so it must "
        "be one of alert, escalate, skip, not 'rollback'",
        "  - policy.yaml:7: defaults.min_confidnce: unknown field 'min_confidnce' "
        "(did you mean 'min_confidence'?)",
        "  - policy.yaml:9: defaults.actions.retri: unknown action 'retri' (use one of retry, "
        "retry_with_backoff, skip, alert, tune, repair_source, rollback, quarantine, escalate) "
        "(did you mean 'retry'?)",
        "  - policy.yaml:10: defaults.actions.tune.max_risk_level: unknown value 'hihg' "
        "(use one of low, medium, high, critical) (did you mean 'high'?)",
        "  - policy.yaml:14: environments.production.actions.skip.min_confidence: "
        "Input should be less than or equal to 1",
        "  - policy.yaml:15: environments.production.approvel: unknown field 'approvel' "
        "(did you mean 'approval'?)",
    ]
    assert [issue.line for issue in caught.value.issues] == [4, 5, 7, 9, 10, 14, 15]


def test_a_role_nobody_holds_is_an_error() -> None:
    text = "approvers:\n  alice: [operator]\ndefaults:\n  approver_roles: [operater, sre]\n"
    with pytest.raises(PolicyFileError) as caught:
        load_policy_text(text, "p.yaml")
    assert [issue.render("p.yaml") for issue in caught.value.issues] == [
        "p.yaml:4: defaults.approver_roles[0]: nobody holds the role 'operater', so nobody "
        "could approve (did you mean 'operator'?)",
        "p.yaml:4: defaults.approver_roles[1]: nobody holds the role 'sre', so nobody could "
        "approve (give it to someone under 'approvers:' (e.g. alice: [sre]))",
    ]


def test_invalid_yaml_and_wrong_shapes_are_located(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=r"p\.yaml:2: not valid YAML"):
        load_policy_text("defaults:\n  min_confidence: 0.5: 1\n", "p.yaml")
    with pytest.raises(PolicyFileError, match=r"p\.yaml:1: a policy file is a mapping"):
        load_policy_text("- retry\n", "p.yaml")
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyFileError, match=r"cannot read the policy file.*MENDLINE_POLICY"):
        load_policy(missing)


def test_the_hash_is_the_files() -> None:
    import hashlib

    assert load_policy_text(POLICY).sha256 == hashlib.sha256(POLICY.encode()).hexdigest()
