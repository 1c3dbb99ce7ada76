"""The heuristic agent on the labelled scenario suite (see README.md here).

It must pick the labelled action class in at least 90% of the scenarios; every plan it
makes must meet the contract, carry the action's risk level, cite the runbooks it used and
stay within the label's parameter bounds; and under the shipped policy no plan above its
action's risk threshold may execute without a person.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from activities.agent import ACTION_RISK, plan
from activities.policy import decide
from models.policy import load_policy
from models.remediation import (
    RISK_ORDER,
    PlanOutcome,
    RemediationAction,
    RiskLevel,
    parameter_problems,
)
from models.settings import Settings
from tests.scenarios.conftest import SCENARIOS, Scenario, record_accuracy

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_ACCURACY = 0.9


@pytest.fixture(scope="module")
async def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PlanOutcome]:
    """Every scenario planned by the heuristic agent (no incident store: runbooks only)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("agent"), agent_provider="heuristic")
    return {
        s.key: await plan(s.failure, s.features, s.prediction, settings, None) for s in SCENARIOS
    }


def test_the_suite_covers_every_failure_kind() -> None:
    categories = Counter(s.category for s in SCENARIOS)
    assert set(categories) >= {
        "transient_network",
        "rate_limited",
        "auth_expiry",
        "schema_drift",
        "layout_change",
        "bad_data",
        "timeouts_resources",
        "upstream_outage",
    }
    assert len(SCENARIOS) >= 40


def test_heuristic_picks_the_labelled_action(outcomes: dict[str, PlanOutcome]) -> None:
    misses = [
        (s, outcomes[s.key].plan.action)
        for s in SCENARIOS
        if outcomes[s.key].plan.action != s.expected
    ]
    right = len(SCENARIOS) - len(misses)
    accuracy = right / len(SCENARIOS)
    per_category = Counter(s.category for s in SCENARIOS)
    missed = Counter(s.category for s, _ in misses)
    lines = [
        f"heuristic agent: {right}/{len(SCENARIOS)} scenarios right ({accuracy:.1%}; "
        f"required {REQUIRED_ACCURACY:.0%})",
        *(
            f"  {category:<20} {per_category[category] - missed[category]}/{per_category[category]}"
            for category in sorted(per_category)
        ),
        *(f"  miss {s.key}: expected {s.expected.value}, got {got.value}" for s, got in misses),
    ]
    for line in lines:
        record_accuracy(line)
        print(line)
    assert accuracy >= REQUIRED_ACCURACY, "\n".join(lines)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.key)
def test_every_plan_is_well_formed(scenario: Scenario, outcomes: dict[str, PlanOutcome]) -> None:
    outcome = outcomes[scenario.key]
    plan_ = outcome.plan
    assert outcome.provider == "heuristic" and outcome.replaced is None
    assert parameter_problems(plan_.action, plan_.parameters) == []
    assert plan_.risk_level == ACTION_RISK[plan_.action]
    # It cites what it used, and only what was retrieved.
    assert plan_.evidence.runbooks, f"{scenario.key} cites no runbook"
    assert set(plan_.evidence.runbooks) <= set(outcome.runbooks)
    # The justification names the factors behind the choice.
    assert f"Chose {plan_.action.value}" in plan_.rationale
    assert "diagnosis" in plan_.rationale
    if plan_.action == scenario.expected:
        for name, (low, high) in scenario.expect_parameters.items():
            assert name in plan_.parameters, f"{scenario.key}: no {name} in {plan_.parameters}"
            assert low <= plan_.parameters[name] <= high, (
                f"{scenario.key}: {name}={plan_.parameters[name]} outside {low:g}..{high:g}"
            )


def test_a_rate_limit_waits_longer_than_a_network_blip(outcomes: dict[str, PlanOutcome]) -> None:
    def delays(category: str) -> list[float]:
        return [
            float(outcomes[s.key].plan.parameters["delay_seconds"])
            for s in SCENARIOS
            if s.category == category
            and outcomes[s.key].plan.action == RemediationAction.RETRY_WITH_BACKOFF
        ]

    network, limited = delays("transient_network"), delays("rate_limited")
    assert network and limited
    assert min(limited) >= 300
    assert sorted(limited)[len(limited) // 2] > sorted(network)[len(network) // 2]


async def test_plans_are_deterministic(outcomes: dict[str, PlanOutcome]) -> None:
    settings = Settings(agent_provider="heuristic")
    for scenario in SCENARIOS:
        again = await plan(scenario.failure, scenario.features, scenario.prediction, settings)
        assert again.plan == outcomes[scenario.key].plan


@pytest.mark.parametrize("environment", ["production", "staging", "development"])
def test_no_plan_above_its_risk_threshold_executes_without_approval(
    environment: str, outcomes: dict[str, PlanOutcome]
) -> None:
    """Every scenario's plan, and the same plan claimed at every risk level, under the
    shipped policy: whatever may execute alone is within its action's risk threshold."""
    policy = load_policy(ROOT / "examples" / "policy.yaml")
    checked = executed = 0
    for scenario in SCENARIOS:
        proposed = outcomes[scenario.key].plan
        for level in RiskLevel:
            candidate = proposed.model_copy(update={"risk_level": level})
            verdict = decide(candidate, scenario.prediction, environment, policy)
            rule = policy.rule(candidate.action, environment)
            checked += 1
            if verdict.verdict == "execute":
                executed += 1
                assert RISK_ORDER[level] <= RISK_ORDER[rule.max_risk_level], (
                    f"{scenario.key}: {candidate.action.value} at risk {level.value} executes "
                    f"in {environment} above {rule.max_risk_level.value}"
                )
                assert not rule.require_approval
    assert checked == len(SCENARIOS) * len(RiskLevel)
    assert executed > 0, "nothing may run alone: the check above proved nothing"
