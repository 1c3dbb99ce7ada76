"""Checking a model's answer against the plan contract.

An answer becomes a :class:`~models.remediation.RemediationPlan` only if all of these hold:

* it is one JSON object (a single markdown code fence around it is tolerated);
* its ``action`` is on the allowlist (:class:`~models.remediation.RemediationAction`);
* it has exactly the plan's fields, of the right types and ranges (``extra="forbid"``);
* its parameters fit the action's schema (:data:`~models.remediation.ACTION_PARAMETERS`;
  ``null`` means absent);
* its risk level is not below the action's floor (a model may not call a quarantine
  low-risk to slip past the policy);
* it cites only runbooks and incidents that were retrieved for it.

Every problem is collected, so the re-ask can name them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from activities.agent.errors import PlanValidationError
from activities.agent.heuristic import ACTION_RISK
from models.remediation import (
    RISK_ORDER,
    RemediationAction,
    RemediationPlan,
    parameter_problems,
)

_FENCE = re.compile(r"\A```(?:json|JSON)?\s*\n?(?P<body>.*?)\n?```\Z", re.S)
ALLOWED = ", ".join(a.value for a in RemediationAction)


def load_answer(raw: str) -> Any:
    """The JSON value in a model's answer (one markdown code fence around it is tolerated).

    Raises:
        PlanValidationError: The answer is empty or not JSON.
    """
    text = raw.strip()
    if match := _FENCE.match(text):
        text = match.group("body").strip()
    if not text:
        raise PlanValidationError(["the answer is empty; reply with one JSON object"])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanValidationError(
            [f"the answer is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"]
        ) from None


def _pydantic_problems(exc: ValidationError, skip_action: bool) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"]) or "plan"
        if skip_action and loc == "action":
            continue
        if error["type"] == "extra_forbidden":
            problems.append(
                f"unknown field {loc!r}: a plan has only {', '.join(RemediationPlan.model_fields)}"
            )
        elif error["type"] == "missing":
            problems.append(f"missing field {loc!r}")
        else:
            problems.append(f"{loc}: {error['msg']}")
    return problems


def parse_plan(raw: str, *, runbooks: Sequence[str], incidents: Sequence[int]) -> RemediationPlan:
    """The plan in a model's answer.

    Args:
        raw: The answer's text.
        runbooks: Runbook ids that were retrieved (the only ones it may cite).
        incidents: Incident ids that were retrieved.

    Raises:
        PlanValidationError: With every problem found.
    """
    data = load_answer(raw)
    if not isinstance(data, dict):
        raise PlanValidationError([f"the answer must be a JSON object, got {type(data).__name__}"])
    problems: list[str] = []
    action = data.get("action")
    action_ok = isinstance(action, str) and action in {a.value for a in RemediationAction}
    if not action_ok:
        problems.append(f"action {action!r:.60} is not allowed; use one of: {ALLOWED}")
    if isinstance(data.get("parameters"), dict):
        data["parameters"] = {k: v for k, v in data["parameters"].items() if v is not None}
    try:
        plan = RemediationPlan.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, skip_action=not action_ok))
        raise PlanValidationError(problems) from None
    # An action outside the allowlist never gets here: the enum refuses it above.
    problems.extend(parameter_problems(plan.action, plan.parameters))
    floor = ACTION_RISK[plan.action]
    if RISK_ORDER[plan.risk_level] < RISK_ORDER[floor]:
        problems.append(
            f"risk_level {plan.risk_level.value!r} is below {floor.value!r}, the least risk "
            f"of {plan.action.value}"
        )
    unknown_runbooks = [r for r in plan.evidence.runbooks if r not in runbooks]
    if unknown_runbooks:
        problems.append(
            f"evidence cites runbooks that were not retrieved: {unknown_runbooks}; "
            f"cite only {list(runbooks)}"
        )
    unknown_incidents = [i for i in plan.evidence.incidents if i not in incidents]
    if unknown_incidents:
        problems.append(
            f"evidence cites incidents that were not retrieved: {unknown_incidents}; "
            f"cite only {list(incidents)}"
        )
    if problems:
        raise PlanValidationError(problems)
    return plan
