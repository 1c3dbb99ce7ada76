"""Loading an alert rules file, with every problem reported at once and located.

A rules file is YAML (or JSON)::

    notifiers:
      ops-webhook: {type: webhook, url: "https://hooks.example/mendline"}
      team-slack: {type: slack, url: "https://hooks.slack.com/services/T0/B0/XX"}
      oncall: {type: email, to: [oncall@example.com]}
    rules:
      - name: error-rate
        metric: error_rate
        scope: {kind: pipeline}
        operator: ">"
        threshold: 0.2
        severity: critical
        cooldown: 1h
        group_by: [pipeline]
        notifiers: [ops-webhook, log]

:class:`RuleFileError` lists each problem as ``file:line: where: what (how to fix)``, the way
pipeline files report theirs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from models.alerts import BUILTIN_NOTIFIERS, AlertRule, RuleFile, rule_problems

# The line map and issue format are the ones pipeline files use, so both kinds of file
# report problems the same way.
from models.pipeline import SpecIssue, line_for_loc, line_map, unreadable_issue, yaml_issue

Lines = Mapping[tuple[str | int, ...], int]


class RuleFileError(ValueError):
    """A rules file is invalid; ``issues`` lists every problem, each located."""

    def __init__(self, issues: Sequence[SpecIssue], source: str) -> None:
        self.issues = list(issues)
        self.source = source
        count = len(self.issues)
        head = f"invalid rules file ({count} problem{'s' if count != 1 else ''}):"
        body = [f"  - {issue.render(source)}" for issue in self.issues]
        super().__init__("\n".join([head, *body]))


def load_rule_file(path: Path | str) -> RuleFile:
    """Read and validate a rules file.

    Raises:
        RuleFileError: The file is missing, does not parse, or has invalid rules.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        issue = unreadable_issue(
            exc, "the rules file", "set MENDLINE_ALERT_RULES or pass --rules FILE"
        )
        raise RuleFileError([issue], str(path)) from exc
    return load_rules_text(text, str(path))


def load_rules_text(text: str, source: str = "<rules>") -> RuleFile:
    """Parse and validate a rules file given as text (YAML; JSON is YAML too).

    Raises:
        RuleFileError: With every problem found, each with its line.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        issue = yaml_issue(exc)
        raise RuleFileError([issue], source) from exc
    lines = line_map(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        issue = SpecIssue(
            path="",
            message=f"a rules file is a mapping with 'notifiers' and 'rules', not a {type(data).__name__}",
            line=1,
        )
        raise RuleFileError([issue], source)
    try:
        rule_file = RuleFile.model_validate(data)
    except ValidationError as exc:
        issues = [_issue(error, data, lines) for error in exc.errors()]
        # Reference problems are still worth reporting alongside field problems.
        issues += _fit_issues(exc, data, lines) + _reference_issues(data, lines)
        raise RuleFileError(_ordered(issues), source) from None
    issues = _reference_issues(data, lines)
    if issues:
        raise RuleFileError(_ordered(issues), source)
    return rule_file


def _reference_issues(data: Mapping[str, Any], lines: Lines) -> list[SpecIssue]:
    """Duplicate rule names and notifiers a rule names but the file does not define."""
    declared = data.get("notifiers")
    names = set(BUILTIN_NOTIFIERS) | (set(declared) if isinstance(declared, Mapping) else set())
    rules = data.get("rules")
    issues: list[SpecIssue] = []
    if not isinstance(rules, list):
        return issues
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        name = rule.get("name")
        label = _rule_label(index, rules)
        if isinstance(name, str):
            if name in seen:
                issues.append(
                    SpecIssue(
                        path=f"{label}.name",
                        message=f"duplicate rule name {name!r} (also rules[{seen[name]}])",
                        line=line_for_loc(("rules", index, "name"), lines),
                        hint="rule names must be unique: they identify incidents",
                    )
                )
            seen.setdefault(name, index)
        wanted = rule.get("notifiers")
        wanted_list = [wanted] if isinstance(wanted, str) else wanted
        if not isinstance(wanted_list, list):
            continue
        for position, notifier in enumerate(wanted_list):
            if isinstance(notifier, str) and notifier not in names:
                close = difflib.get_close_matches(notifier, sorted(names), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"define it under 'notifiers:' (defined: {', '.join(sorted(names))})"
                )
                loc: tuple[str | int, ...] = ("rules", index, "notifiers", position)
                if isinstance(wanted, str):
                    loc = ("rules", index, "notifiers")
                issues.append(
                    SpecIssue(
                        path=f"{label}.notifiers",
                        message=f"unknown notifier {notifier!r}",
                        line=line_for_loc(loc, lines),
                        hint=hint,
                    )
                )
    return issues


def _fit_issues(exc: ValidationError, data: Mapping[str, Any], lines: Lines) -> list[SpecIssue]:
    """How the fields of rules with field errors fit together (their model check never ran)."""
    rules = data.get("rules")
    if not isinstance(rules, list):
        return []
    failed = {e["loc"][1] for e in exc.errors() if e["loc"][:1] == ("rules",) and len(e["loc"]) > 1}
    issues = []
    for index in sorted(i for i in failed if isinstance(i, int) and i < len(rules)):
        rule = rules[index]
        if not isinstance(rule, Mapping):
            continue
        scope = rule.get("scope")
        group_by = rule.get("group_by", [])
        for problem in rule_problems(
            metric=rule.get("metric"),
            scope_kind=scope.get("kind") if isinstance(scope, Mapping) else scope,
            has_operator=rule.get("operator") is not None,
            has_threshold=rule.get("threshold") is not None,
            has_detector=rule.get("detector") is not None,
            group_by=[group_by] if isinstance(group_by, str) else list(group_by or []),
        ):
            issues.append(
                SpecIssue(
                    path=_rule_label(index, rules),
                    message=problem,
                    line=line_for_loc(("rules", index), lines),
                )
            )
    return issues


def _issue(error: Mapping[str, Any], data: Mapping[str, Any], lines: Lines) -> SpecIssue:
    """Turn one pydantic error into a located issue with a hint where one helps."""
    loc = _data_loc(tuple(error["loc"]), data)
    message = str(error["msg"]).removeprefix("Value error, ")
    hint = ""
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}"
        hint = _suggest(str(loc[-1]), _fields_at(loc[:-1], data))
    elif kind == "missing":
        message = f"missing required field {loc[-1]!r}"
    elif kind == "enum" and isinstance(value, str):
        allowed = str(error.get("ctx", {}).get("expected", ""))
        choices = [c.strip(" '") for c in allowed.replace(" or ", ",").split(",") if c.strip()]
        message = f"{value!r} is not one of {', '.join(choices)}"
        hint = _suggest(value, choices)
    elif kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        expected = error.get("ctx", {}).get("expected_tags", "")
        message = f"unknown kind {tag!r} (use one of {expected})"
    elif kind == "union_tag_not_found":
        field = str(error.get("ctx", {}).get("discriminator", "type")).strip("'")
        message = f"missing {field!r}"
        hint = (
            "add kind: zscore or kind: ewma"
            if field == "kind"
            else "add type: webhook, slack, email or log"
        )
    return SpecIssue(
        path=_path_text(loc, data), message=message, line=line_for_loc(loc, lines), hint=hint
    )


def _data_loc(loc: tuple[Any, ...], data: Any) -> tuple[str | int, ...]:
    """The location as a path in the document: pydantic adds union tags (``zscore``,
    ``webhook``) that are values there, not keys."""
    kept: list[str | int] = []
    node = data
    for item in loc:
        if node is None:
            kept.append(item)
        elif (isinstance(node, list) and isinstance(item, int) and item < len(node)) or (
            isinstance(node, Mapping) and item in node
        ):
            kept.append(item)
            node = node[item]
        elif isinstance(node, Mapping) and item not in (node.get("type"), node.get("kind")):
            kept.append(item)  # a missing or unknown key: the path ends here
            node = None
    return tuple(kept)


def _path_text(loc: tuple[str | int, ...], data: Mapping[str, Any]) -> str:
    parts: list[str] = []
    rules = data.get("rules")
    for position, item in enumerate(loc):
        if isinstance(item, int):
            if position == 1 and loc[0] == "rules" and isinstance(rules, list):
                parts.append(_rule_label(item, rules).removeprefix("rules"))
            else:
                parts.append(f"[{item}]")
        else:
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts)


def _rule_label(index: int, rules: list[Any]) -> str:
    rule = rules[index] if index < len(rules) else None
    name = rule.get("name") if isinstance(rule, Mapping) else None
    return f"rules[{index}] ({name})" if isinstance(name, str) else f"rules[{index}]"


def _fields_at(loc: tuple[str | int, ...], data: Mapping[str, Any]) -> list[str]:
    """Field names allowed where ``loc`` points, for 'did you mean' hints."""
    from models.alerts import (
        EmailNotifierSpec,
        EwmaDetector,
        RuleScope,
        SlackNotifierSpec,
        WebhookNotifierSpec,
        ZScoreDetector,
    )

    def names(model: Any) -> list[str]:
        return [f.alias or n for n, f in model.model_fields.items()]

    if loc == ():
        return ["notifiers", "rules"]
    if len(loc) == 2 and loc[0] == "rules":
        return names(AlertRule)
    if len(loc) == 3 and loc[0] == "rules" and loc[2] == "scope":
        return names(RuleScope)
    if len(loc) == 3 and loc[0] == "rules" and loc[2] == "detector":
        return names(ZScoreDetector) + names(EwmaDetector)
    if len(loc) == 2 and loc[0] == "notifiers":
        return names(WebhookNotifierSpec) + names(SlackNotifierSpec) + names(EmailNotifierSpec)
    return []


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(choices)), n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def _ordered(issues: list[SpecIssue]) -> list[SpecIssue]:
    """Issues without repeats, in the order of the file."""
    unique = {(issue.path, issue.message): issue for issue in reversed(issues)}
    return sorted(reversed(unique.values()), key=lambda issue: issue.line or 0)
