"""The remediation policy: which actions may run alone, and who approves the others.

A policy file is YAML (JSON is YAML too)::

    approvers:                      # person: roles
      alice: [operator]
      bob: [operator, sre]
    approval:
      timeout: 1h                   # how long a plan waits for a person
      on_timeout: escalate          # then this runs instead (escalate, alert or skip)
    defaults:                       # every environment
      min_confidence: 0.5           # fields here apply to every action…
      max_risk_level: medium
      approver_roles: [operator]
      actions:                      # …unless an action says otherwise
        retry: {min_confidence: 0.6}
        rollback: {require_approval: true, approver_roles: [sre]}
    environments:
      production:                   # fields here override the defaults for that environment
        actions:
          tune: {require_approval: true}
        approval: {timeout: 30m}

Each action's rule is resolved field by field, most specific first: the environment's
``actions.<action>``, then ``defaults.actions.<action>``, then the ``defaults`` fields, then
the built-in defaults of :class:`ActionRule`. Only the actions of
:class:`~models.remediation.RemediationAction` can be named.

:class:`PolicyFileError` lists each problem as ``file:line: where: what (how to fix)``, the
way pipeline and alert rules files report theirs. The engine itself
(:func:`activities.policy.decide`) is pure and lives with the activities.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.alert_rules import _ordered, _suggest
from models.durations import Seconds
from models.pipeline import SpecIssue, line_for_loc, line_map, unreadable_issue, yaml_issue
from models.remediation import RemediationAction, RiskLevel

TIMEOUT_ACTIONS = frozenset(
    {RemediationAction.ESCALATE, RemediationAction.ALERT, RemediationAction.SKIP}
)
"""Actions a policy may run when nobody decides in time: they run without approval, so only
actions that change nothing irreversible are allowed."""

Lines = Mapping[tuple[str | int, ...], int]


class ActionRuleFields(BaseModel):
    """The fields of an action rule as written in a file: all optional, merged by level."""

    model_config = ConfigDict(extra="forbid")

    allowed: bool | None = None
    max_risk_level: RiskLevel | None = None
    block_above: RiskLevel | None = None
    min_confidence: float | None = Field(None, ge=0, le=1)
    max_predicted_risk: float | None = Field(None, ge=0, le=1)
    require_approval: bool | None = None
    approver_roles: list[str] | None = None


class ActionRule(BaseModel):
    """The resolved rule of one action in one environment.

    Attributes:
        allowed: False: the action is blocked outright.
        max_risk_level: A plan of a higher risk level needs approval.
        block_above: A plan of a higher risk level than this is blocked (None: never).
        min_confidence: A plan less confident than this needs approval.
        max_predicted_risk: A failure predicted to persist with a higher probability than
            this needs approval before the action runs.
        require_approval: The action always needs approval.
        approver_roles: Roles whose holders may approve it.
    """

    allowed: bool = True
    max_risk_level: RiskLevel = RiskLevel.MEDIUM
    block_above: RiskLevel | None = None
    min_confidence: float = Field(0.5, ge=0, le=1)
    max_predicted_risk: float = Field(1.0, ge=0, le=1)
    require_approval: bool = False
    approver_roles: list[str] = Field(default_factory=list)


class DefaultRules(ActionRuleFields):
    """``defaults``: fields for every action, and per-action rules."""

    actions: dict[RemediationAction, ActionRuleFields] = Field(default_factory=dict)


class ApprovalSettings(BaseModel):
    """``approval``: how long a plan waits for a person, and what runs when nobody decides."""

    model_config = ConfigDict(extra="forbid")

    timeout: Seconds | None = Field(None, gt=0)
    on_timeout: RemediationAction | None = None

    @field_validator("on_timeout")
    @classmethod
    def _safe_on_timeout(cls, value: RemediationAction | None) -> RemediationAction | None:
        if value is not None and value not in TIMEOUT_ACTIONS:
            allowed = ", ".join(sorted(a.value for a in TIMEOUT_ACTIONS))
            raise ValueError(
                f"on_timeout runs without approval, so it must be one of {allowed}, not {value.value!r}"
            )
        return value


class EnvironmentRules(BaseModel):
    """``environments.<name>``: per-action overrides and approval settings."""

    model_config = ConfigDict(extra="forbid")

    actions: dict[RemediationAction, ActionRuleFields] = Field(default_factory=dict)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)


class PolicyFile(BaseModel):
    """A policy file's content, as validated."""

    model_config = ConfigDict(extra="forbid")

    approvers: dict[str, list[str]] = Field(default_factory=dict)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    defaults: DefaultRules = Field(default_factory=DefaultRules)
    environments: dict[str, EnvironmentRules] = Field(default_factory=dict)


DEFAULT_APPROVAL_TIMEOUT = 3600.0
DEFAULT_ON_TIMEOUT = RemediationAction.ESCALATE


class Policy(PolicyFile):
    """A loaded policy: the file's content plus where it came from and its hash.

    Attributes:
        source: The file it was read from (for messages).
        sha256: SHA-256 of the file's text, recorded with every verdict for the audit.
    """

    source: str = "<policy>"
    sha256: str = ""

    def rule(self, action: RemediationAction, environment: str) -> ActionRule:
        """The resolved rule of ``action`` in ``environment`` (see the module docstring)."""
        layers: list[ActionRuleFields] = []
        env = self.environments.get(environment)
        if env is not None and action in env.actions:
            layers.append(env.actions[action])
        if action in self.defaults.actions:
            layers.append(self.defaults.actions[action])
        layers.append(self.defaults)
        values: dict[str, Any] = {}
        for field in ActionRuleFields.model_fields:
            for layer in layers:
                value = getattr(layer, field)
                if value is not None:
                    values[field] = value
                    break
        return ActionRule.model_validate(values)

    def approval_for(self, environment: str) -> tuple[float, RemediationAction]:
        """``(timeout seconds, on_timeout action)`` in ``environment``."""
        env = self.environments.get(environment)
        timeout = (env.approval.timeout if env else None) or self.approval.timeout
        on_timeout = (env.approval.on_timeout if env else None) or self.approval.on_timeout
        return timeout or DEFAULT_APPROVAL_TIMEOUT, on_timeout or DEFAULT_ON_TIMEOUT

    def holders(self, roles: Iterable[str]) -> list[str]:
        """People holding any of ``roles``, sorted."""
        wanted = set(roles)
        return sorted(person for person, held in self.approvers.items() if wanted & set(held))


class PolicyFileError(ValueError):
    """A policy file is invalid; ``issues`` lists every problem, each located."""

    type_name = "PolicyFileError"

    def __init__(self, issues: Sequence[SpecIssue], source: str) -> None:
        self.issues = list(issues)
        self.source = source
        count = len(self.issues)
        head = f"invalid policy file ({count} problem{'s' if count != 1 else ''}):"
        body = [f"  - {issue.render(source)}" for issue in self.issues]
        super().__init__("\n".join([head, *body]))


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file.

    Raises:
        PolicyFileError: The file is missing, does not parse, or is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        issue = unreadable_issue(
            exc,
            "the policy file",
            "set MENDLINE_POLICY or pass --policy FILE (examples/policy.yaml is a start)",
        )
        raise PolicyFileError([issue], str(path)) from exc
    return load_policy_text(text, str(path))


def load_policy_text(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate a policy given as text.

    Raises:
        PolicyFileError: With every problem found, each with its line.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        issue = yaml_issue(exc)
        raise PolicyFileError([issue], source) from exc
    if data is None:
        data = {}
    lines = line_map(text)
    if not isinstance(data, dict):
        issue = SpecIssue(
            path="",
            message=(
                "a policy file is a mapping with 'approvers', 'approval', 'defaults' and "
                f"'environments', not a {type(data).__name__}"
            ),
            line=1,
        )
        raise PolicyFileError([issue], source)
    try:
        content = PolicyFile.model_validate(data)
    except ValidationError as exc:
        issues = [_issue(error, lines) for error in exc.errors()]
        raise PolicyFileError(_ordered(issues), source) from None
    issues = _role_issues(content, lines)
    if issues:
        raise PolicyFileError(_ordered(issues), source)
    return Policy.model_validate(
        {
            **dict(content),
            "source": source,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    )


def _role_issues(content: PolicyFile, lines: Lines) -> list[SpecIssue]:
    """Roles that some rule lets approve but nobody in ``approvers`` holds."""
    held = {role for roles in content.approvers.values() for role in roles}
    issues: list[SpecIssue] = []
    places: list[tuple[tuple[str | int, ...], ActionRuleFields]] = [
        (("defaults",), content.defaults)
    ]
    places += [(("defaults", "actions", a.value), r) for a, r in content.defaults.actions.items()]
    for env_name, env in content.environments.items():
        places += [
            (("environments", env_name, "actions", a.value), r) for a, r in env.actions.items()
        ]
    for loc, rule in places:
        for index, role in enumerate(rule.approver_roles or []):
            if role not in held:
                close = difflib.get_close_matches(role, sorted(held), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else "give it to someone under 'approvers:' (e.g. alice: [" + role + "])"
                )
                issues.append(
                    SpecIssue(
                        path=_path_text((*loc, "approver_roles", index)),
                        message=f"nobody holds the role {role!r}, so nobody could approve",
                        line=line_for_loc((*loc, "approver_roles", index), lines),
                        hint=hint,
                    )
                )
    return issues


_FIELDS = {
    "": ["approvers", "approval", "defaults", "environments"],
    "defaults": [*ActionRuleFields.model_fields, "actions"],
    "action": list(ActionRuleFields.model_fields),
    "environment": ["actions", "approval"],
    "approval": ["timeout", "on_timeout"],
}


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    if loc == ():
        return _FIELDS[""]
    if loc == ("defaults",):
        return _FIELDS["defaults"]
    if _is_action_key(loc):
        return _FIELDS["action"]
    if len(loc) == 2 and loc[0] == "environments":
        return _FIELDS["environment"]
    if loc[-1:] == ("approval",):
        return _FIELDS["approval"]
    return []


def _issue(error: Mapping[str, Any], lines: Lines) -> SpecIssue:
    """Turn one pydantic error into a located issue with a hint where one helps."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    message = str(error["msg"]).removeprefix("Value error, ")
    hint = ""
    if loc[-1:] == ("[key]",):
        # An enum used as a mapping key: pydantic appends "[key]" to the bad key's path.
        loc = loc[:-1]
    if kind == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}"
        hint = _suggest(str(loc[-1]), _fields_at(loc[:-1]))
    elif kind == "missing":
        message = f"missing required field {loc[-1]!r}"
    elif kind == "enum" and isinstance(value, str):
        allowed = str(error.get("ctx", {}).get("expected", ""))
        choices = [c.strip(" '") for c in allowed.replace(" or ", ",").split(",") if c.strip()]
        what = "action" if _is_action_key(loc) else "value"
        message = f"unknown {what} {value!r} (use one of {', '.join(choices)})"
        hint = _suggest(value, choices)
    return SpecIssue(
        path=_path_text(loc), message=message, line=line_for_loc(loc, lines), hint=hint
    )


def _is_action_key(loc: tuple[str | int, ...]) -> bool:
    return (len(loc) == 3 and loc[:2] == ("defaults", "actions")) or (
        len(loc) == 4 and loc[0] == "environments" and loc[2] == "actions"
    )


def _path_text(loc: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else (f".{item}" if parts else str(item)))
    return "".join(parts)
