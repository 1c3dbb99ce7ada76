"""A model's answer becomes a plan only if it meets the contract and the allowlist."""

from __future__ import annotations

import json
from typing import Any

import pytest

from activities.agent import PlanValidationError, parse_plan
from activities.agent.prompt import plan_schema
from models.remediation import ACTION_PARAMETERS, RemediationAction

RUNBOOKS = ["rate-limiting", "transient-network"]
INCIDENTS = [7]


def answer(**changes: Any) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "summary": "orders/fetch was rate limited",
        "suspected_cause": "HTTP 429",
        "action": "retry_with_backoff",
        "parameters": {"delay_seconds": 600},
        "confidence": 0.8,
        "risk_level": "low",
        "rationale": "the rate-limiting runbook says to wait",
        "evidence": {"runbooks": ["rate-limiting"], "incidents": [7]},
    }
    plan.update(changes)
    return plan


def problems(raw: str) -> list[str]:
    with pytest.raises(PlanValidationError) as caught:
        parse_plan(raw, runbooks=RUNBOOKS, incidents=INCIDENTS)
    return caught.value.problems


def test_a_valid_answer_is_a_plan() -> None:
    plan = parse_plan(json.dumps(answer()), runbooks=RUNBOOKS, incidents=INCIDENTS)
    assert plan.action == "retry_with_backoff" and plan.parameters == {"delay_seconds": 600}


def test_a_fenced_answer_and_null_parameters_are_accepted() -> None:
    raw = (
        "```json\n"
        + json.dumps(answer(parameters={"delay_seconds": 60, "batch_size": None}))
        + "\n```"
    )
    plan = parse_plan(raw, runbooks=RUNBOOKS, incidents=INCIDENTS)
    assert plan.parameters == {"delay_seconds": 60}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("I think you should retry!", "not valid JSON"),
        ('{"summary": "x",', "not valid JSON"),
        ("", "empty"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_garbage_is_refused(raw: str, expected: str) -> None:
    assert any(expected in p for p in problems(raw))


def test_an_action_outside_the_allowlist_is_refused_with_the_allowed_ones() -> None:
    found = problems(json.dumps(answer(action="drop_table", parameters={"table": "orders"})))
    assert any("'drop_table' is not allowed" in p and "retry_with_backoff" in p for p in found)


def test_parameters_outside_the_schema_are_refused() -> None:
    found = problems(json.dumps(answer(action="retry", parameters={"cmd": "rm -rf /"})))
    assert any("retry takes no parameter 'cmd'" in p for p in found)
    found = problems(json.dumps(answer(parameters={"delay_seconds": 10**9})))
    assert any("outside" in p for p in found)


def test_unknown_fields_and_bad_values_are_all_listed() -> None:
    found = problems(json.dumps(answer(confidence=3, risk_level="none", execute="now")))
    assert any("unknown field 'execute'" in p for p in found)
    assert any(p.startswith("confidence") for p in found)
    assert any(p.startswith("risk_level") for p in found)


def test_a_risk_level_below_the_actions_floor_is_refused() -> None:
    found = problems(json.dumps(answer(action="quarantine", parameters={}, risk_level="low")))
    assert any("below 'high'" in p for p in found)


def test_citations_must_have_been_retrieved() -> None:
    found = problems(json.dumps(answer(evidence={"runbooks": ["made-up"], "incidents": [99]})))
    assert any("runbooks that were not retrieved: ['made-up']" in p for p in found)
    assert any("incidents that were not retrieved: [99]" in p for p in found)


def test_the_grammar_schema_pairs_each_action_with_its_own_parameters_and_risk_floor() -> None:
    variants = {
        v["properties"]["action"]["enum"][0]: v
        for v in plan_schema(["rate-limiting"], [], strict=False)["anyOf"]
    }
    assert set(variants) == {a.value for a in RemediationAction}
    for action in RemediationAction:
        variant = variants[action.value]
        assert set(variant["properties"]["parameters"]["properties"]) == set(
            ACTION_PARAMETERS[action]
        )
    assert variants["quarantine"]["properties"]["risk_level"]["enum"] == ["high", "critical"]
    evidence = variants["retry"]["properties"]["evidence"]["properties"]
    assert evidence["runbooks"]["items"]["enum"] == ["rate-limiting"]
    assert evidence["incidents"]["maxItems"] == 0  # nothing retrieved, nothing to cite


def test_the_strict_schema_follows_openai_structured_output_rules() -> None:
    def objects(node: object) -> list[dict[str, object]]:
        found = []
        if isinstance(node, dict):
            if node.get("type") == "object":
                found.append(node)
            for value in node.values():
                found.extend(objects(value))
        elif isinstance(node, list):
            for value in node:
                found.extend(objects(value))
        return found

    schema = plan_schema(["a"], [1], strict=True)
    assert schema["type"] == "object"
    for obj in objects(schema):  # every object closed, every property required
        assert obj["additionalProperties"] is False
        assert set(obj["required"]) == set(obj["properties"])  # type: ignore[call-overload]
    text = str(schema)
    assert "maxLength" not in text and "anyOf" not in text and "maxItems" not in text
