"""The decision engine: a plan, the predicted risk and the policy → a :class:`Verdict`.

:func:`decide` is pure and deterministic: the same plan, prediction, environment and policy
always give the same verdict with the same reasons, each naming the numbers it compared
(``confidence 0.42 < 0.60 required for tune in production``). The order of the checks::

    action not allowed in the environment         → block
    parameters outside the action's schema        → block
    plan risk level above ``block_above``         → block
    always needs approval, risk level above
    ``max_risk_level``, confidence below
    ``min_confidence``, predicted risk above
    ``max_predicted_risk``                        → needs_approval (every reason listed),
                                                    or block when no role may approve
    otherwise                                     → execute

So a plan riskier than its action allows can never run without a person: it needs
approval, or is blocked.
"""

from __future__ import annotations

from models.policy import ActionRule, Policy, load_policy
from models.remediation import (
    RISK_ORDER,
    Prediction,
    RemediationPlan,
    Verdict,
    parameter_problems,
)

__all__ = ["decide", "load_policy"]


def decide(
    plan: RemediationPlan, prediction: Prediction, environment: str, policy: Policy
) -> Verdict:
    """Judge ``plan`` under ``policy`` in ``environment`` (pure; see the module docstring).

    Args:
        plan: The agent's proposal.
        prediction: The failure predictor's output for the same failure.
        environment: The deployment's environment (``MENDLINE_ENVIRONMENT``).
        policy: The loaded policy file.

    Returns:
        The verdict, its reasons, and for ``needs_approval`` who may approve, how long to
        wait and what runs when nobody decides.
    """
    action = plan.action.value
    where = f"{action} in {environment}"
    rule = policy.rule(plan.action, environment)
    timeout, on_timeout = policy.approval_for(environment)

    def verdict(kind: str, reasons: list[str], roles: list[str] | None = None) -> Verdict:
        return Verdict.model_validate(
            {
                "verdict": kind,
                "reasons": reasons,
                "approver_roles": roles or [],
                "approvers": policy.holders(roles or []),
                "timeout_seconds": timeout,
                "on_timeout": on_timeout,
                "policy_sha256": policy.sha256,
            }
        )

    if not rule.allowed:
        return verdict("block", [f"policy does not allow {where}"])
    problems = parameter_problems(plan.action, plan.parameters)
    if problems:
        return verdict("block", [f"invalid parameters for {action}: {p}" for p in problems])
    risk = plan.risk_level
    if rule.block_above is not None and RISK_ORDER[risk] > RISK_ORDER[rule.block_above]:
        return verdict(
            "block",
            [
                f"risk {risk.value} > {rule.block_above.value}, the most {where} may carry "
                "(block_above)"
            ],
        )

    reasons = _approval_reasons(plan, prediction, rule, where)
    if reasons:
        if not rule.approver_roles:
            return verdict(
                "block",
                [*reasons, f"no approver role is configured for {where}, so nobody may approve"],
            )
        roles = sorted(set(rule.approver_roles))
        if not policy.holders(roles):
            return verdict(
                "block",
                [*reasons, f"nobody holds a role that may approve {where} ({', '.join(roles)})"],
            )
        return verdict("needs_approval", reasons, roles)
    confidence, min_confidence = _pair(plan.confidence, rule.min_confidence)
    predicted, max_predicted = _pair(prediction.risk, rule.max_predicted_risk)
    return verdict(
        "execute",
        [
            f"{where} may run alone: confidence {confidence} ≥ {min_confidence}, "
            f"risk {risk.value} ≤ {rule.max_risk_level.value}, "
            f"predicted risk {predicted} ≤ {max_predicted}"
        ],
    )


def _approval_reasons(
    plan: RemediationPlan, prediction: Prediction, rule: ActionRule, where: str
) -> list[str]:
    """Every reason the plan needs a person (empty: it may run alone)."""
    reasons = []
    if rule.require_approval:
        reasons.append(f"{where} always needs approval")
    if RISK_ORDER[plan.risk_level] > RISK_ORDER[rule.max_risk_level]:
        reasons.append(
            f"risk {plan.risk_level.value} > {rule.max_risk_level.value} allowed for {where}"
        )
    if plan.confidence < rule.min_confidence:
        shown, limit = _pair(plan.confidence, rule.min_confidence)
        reasons.append(f"confidence {shown} < {limit} required for {where}")
    if prediction.risk > rule.max_predicted_risk:
        shown, limit = _pair(prediction.risk, rule.max_predicted_risk)
        reasons.append(
            f"predicted risk {shown} > {limit} allowed for {where} "
            f"(model {prediction.model} v{prediction.version})"
        )
    return reasons


def _pair(value: float, limit: float) -> tuple[str, str]:
    """Both numbers with two decimals, or as many more as it takes to tell them apart."""
    for digits in range(2, 7):
        shown = f"{value:.{digits}f}", f"{limit:.{digits}f}"
        if shown[0] != shown[1] or value == limit:
            return shown
    return f"{value:g}", f"{limit:g}"
