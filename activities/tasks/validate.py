"""The ``validate`` task: data-quality rules over a list of records."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from activities.tasks.base import (
    DataValidationError,
    ExpressionError,
    HandlerOutput,
    TaskConfigError,
    TaskContext,
    TaskHandler,
)
from activities.tasks.expressions import MAX_REGEX_INPUT, compile_expression, compile_regex
from activities.tasks.transform import records_param
from models.durations import parse_duration

RULE_KINDS = ("not_null", "unique", "range", "regex", "row_count", "freshness", "expr")
MAX_EXAMPLES = 3


@dataclass
class RuleResult:
    """The outcome of one rule: failing row count and the first few examples."""

    failures: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def fail(self, row: int | None, **info: Any) -> None:
        self.failures += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"row": row, **info} if row is not None else info)


@dataclass(frozen=True)
class Rule:
    """A parsed rule: ``label`` describes it, ``check`` runs it over all records."""

    kind: str
    label: str
    check: Callable[[list[dict[str, Any]], datetime], RuleResult]


def _fields(value: Any, kind: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(f, str) for f in value):
        raise TaskConfigError(
            f"validate rule {kind!r} needs a list of field names, got {value!r:.80}"
        )
    return value


def _spec(
    value: Any, kind: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> dict[str, Any]:
    example = ", ".join(f"{k}: ..." for k in required + optional)
    if not isinstance(value, Mapping) or not set(required) <= set(value):
        raise TaskConfigError(f"validate rule {kind!r} needs {{{example}}}, got {value!r:.80}")
    unknown = set(value) - set(required) - set(optional)
    if unknown:
        raise TaskConfigError(
            f"validate rule {kind!r} has unknown keys {sorted(unknown)}; it takes {{{example}}}"
        )
    return dict(value)


def _not_null(fields: list[str]) -> Callable[[list[dict[str, Any]], datetime], RuleResult]:
    def check(records: list[dict[str, Any]], _now: datetime) -> RuleResult:
        result = RuleResult()
        for index, record in enumerate(records):
            missing = [f for f in fields if record.get(f) is None]
            if missing:
                result.fail(index, null=missing)
        return result

    return check


def _unique(fields: list[str]) -> Callable[[list[dict[str, Any]], datetime], RuleResult]:
    def check(records: list[dict[str, Any]], _now: datetime) -> RuleResult:
        result = RuleResult()
        first_seen: dict[str, int] = {}
        for index, record in enumerate(records):
            values = [record.get(f) for f in fields]
            key = json.dumps(values, sort_keys=True, default=str)
            if key in first_seen:
                result.fail(
                    index, value=values[0] if len(values) == 1 else values, first=first_seen[key]
                )
            else:
                first_seen[key] = index
        return result

    return check


def _range(spec: dict[str, Any]) -> Callable[[list[dict[str, Any]], datetime], RuleResult]:
    name, low, high = spec["field"], spec.get("min"), spec.get("max")

    def check(records: list[dict[str, Any]], _now: datetime) -> RuleResult:
        result = RuleResult()
        for index, record in enumerate(records):
            value = record.get(name)
            if value is None:
                continue  # absence is the not_null rule's business
            try:
                inside = (low is None or value >= low) and (high is None or value <= high)
            except TypeError:
                inside = False
            if not inside:
                result.fail(index, value=value)
        return result

    return check


def _regex(spec: dict[str, Any]) -> Callable[[list[dict[str, Any]], datetime], RuleResult]:
    name = spec["field"]
    try:
        pattern = compile_regex(spec["pattern"]) if isinstance(spec["pattern"], str) else None
    except ValueError as exc:
        raise TaskConfigError(f"validate rule 'regex': {exc}") from None
    if pattern is None:
        raise TaskConfigError(
            f"validate rule 'regex' needs 'pattern' as a string, got {spec['pattern']!r:.80}"
        )

    def check(records: list[dict[str, Any]], _now: datetime) -> RuleResult:
        result = RuleResult()
        for index, record in enumerate(records):
            value = record.get(name)
            if value is None:
                continue
            text = str(value)
            if len(text) > MAX_REGEX_INPUT or not pattern.fullmatch(text):
                result.fail(index, value=value)
        return result

    return check


def _row_count(spec: dict[str, Any]) -> Callable[[list[dict[str, Any]], datetime], RuleResult]:
    low, high = spec.get("min"), spec.get("max")
    for bound in (low, high):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
            raise TaskConfigError(
                f"validate rule 'row_count' bounds must be whole numbers, got {bound!r}"
            )

    def check(records: list[dict[str, Any]], _now: datetime) -> RuleResult:
        result = RuleResult()
        count = len(records)
        if (low is not None and count < low) or (high is not None and count > high):
            result.fail(None, count=count)
            result.note = f"got {count} rows"
        return result

    return check


def parse_timestamp(value: Any) -> datetime:
    """ISO text, a datetime or epoch seconds → aware UTC datetime (naive means UTC).

    Raises:
        ValueError: The value is not a timestamp.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError):
            raise ValueError(f"{value!r} is out of range for epoch seconds") from None
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"{value!r:.40} is not a timestamp")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _freshness(spec: dict[str, Any]) -> Callable[[list[dict[str, Any]], datetime], RuleResult]:
    name = spec["field"]
    try:
        max_age = parse_duration(spec["max_age"])
        rule_now = parse_timestamp(spec["now"]) if spec.get("now") is not None else None
    except ValueError as exc:
        raise TaskConfigError(f"validate rule 'freshness': {exc}") from None

    def check(records: list[dict[str, Any]], now: datetime) -> RuleResult:
        result = RuleResult()
        now = rule_now or now
        newest: datetime | None = None
        for index, record in enumerate(records):
            value = record.get(name)
            if value is None:
                continue
            try:
                stamp = parse_timestamp(value)
            except ValueError:
                result.fail(index, value=value, problem="not a timestamp")
                continue
            newest = stamp if newest is None or stamp > newest else newest
        if newest is None:
            result.fail(None, problem=f"no {name!r} timestamps")
            result.note = f"no record has a {name!r} timestamp"
        elif (age := (now - newest).total_seconds()) > max_age:
            result.fail(None, newest=newest.isoformat(), age_seconds=round(age, 3))
            result.note = f"newest {name!r} is {newest.isoformat()}, {_age(age)} old"
        return result

    return check


def _age(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    return (
        f"{days}d {rest // 3600}h {rest % 3600 // 60}m"
        if days
        else f"{rest // 3600}h {rest % 3600 // 60}m"
    )


def _expr(text: Any, label: str) -> Callable[[list[dict[str, Any]], datetime], RuleResult]:
    if not isinstance(text, str):
        raise TaskConfigError(f"validate rule 'expr' needs an expression string, got {text!r:.80}")
    try:
        expression = compile_expression(text)
    except ExpressionError as exc:
        raise ExpressionError(f"validate {label}: {exc}", **exc.details) from None

    def check(records: list[dict[str, Any]], _now: datetime) -> RuleResult:
        result = RuleResult()
        for index, record in enumerate(records):
            try:
                ok = expression.evaluate(record)
            except ExpressionError as exc:
                result.fail(index, error=str(exc))
                continue
            if not ok:
                result.fail(index, value=ok)
        return result

    return check


def parse_rule(rule: Any, index: int) -> Rule:
    """Parse rule ``index`` (1-based, for messages).

    Raises:
        TaskConfigError: The rule is malformed.
        ExpressionError: An ``expr`` rule does not compile.
    """
    if not isinstance(rule, Mapping) or len(rule) != 1 or next(iter(rule)) not in RULE_KINDS:
        raise TaskConfigError(
            f"validate rule {index} must be a mapping with exactly one of {', '.join(RULE_KINDS)}, "
            f"got {rule!r:.80}"
        )
    ((kind, value),) = rule.items()
    if kind == "not_null":
        fields = _fields(value, kind)
        return Rule(kind, f"not_null({', '.join(fields)})", _not_null(fields))
    if kind == "unique":
        fields = _fields(value, kind)
        return Rule(kind, f"unique({', '.join(fields)})", _unique(fields))
    if kind == "range":
        spec = _spec(value, kind, ("field",), ("min", "max"))
        label = f"range({spec['field']}: {spec.get('min', '')}..{spec.get('max', '')})"
        return Rule(kind, label, _range(spec))
    if kind == "regex":
        spec = _spec(value, kind, ("field", "pattern"), ())
        return Rule(kind, f"regex({spec['field']} ~ {spec['pattern']!r})", _regex(spec))
    if kind == "row_count":
        spec = _spec(value, kind, (), ("min", "max"))
        return Rule(
            kind, f"row_count({spec.get('min', '')}..{spec.get('max', '')})", _row_count(spec)
        )
    if kind == "freshness":
        spec = _spec(value, kind, ("field", "max_age"), ("now",))
        return Rule(kind, f"freshness({spec['field']} within {spec['max_age']})", _freshness(spec))
    return Rule(kind, f"expr({value})", _expr(value, f"rule {index}"))


def _parse(params: Mapping[str, Any]) -> tuple[list[Rule], str, datetime | None]:
    rules = params.get("rules")
    if not isinstance(rules, list) or not rules:
        raise TaskConfigError(
            "validate task needs param 'rules' as a non-empty list, e.g. "
            "[{not_null: [id]}, {unique: [id]}, {expr: 'amount > 0'}]"
        )
    on_fail = params.get("on_fail", "error")
    if on_fail not in ("error", "warn"):
        raise TaskConfigError(
            f"validate task param 'on_fail' must be 'error' or 'warn', got {on_fail!r:.40}"
        )
    now = params.get("now")
    try:
        parsed_now = parse_timestamp(now) if now is not None else None
    except ValueError:
        raise TaskConfigError(
            f"validate task param 'now' must be an ISO timestamp, got {now!r:.40}"
        ) from None
    return [parse_rule(rule, i) for i, rule in enumerate(rules, start=1)], on_fail, parsed_now


def _describe_failure(label: str, result: RuleResult) -> str:
    if result.note:
        return f"- {label}: {result.note}"
    examples = "; ".join(
        ", ".join(f"{k}={v!r:.60}" for k, v in example.items()) for example in result.examples
    )
    rows = "row" if result.failures == 1 else "rows"
    return f"- {label}: {result.failures} {rows} failed, e.g. {examples}"


class ValidateHandler(TaskHandler):
    """Check data-quality rules over records; fail the task (or warn) when any is broken.

    Params:
        records (list of objects, required): The data, usually ``"{{ tasks.x.output.records }}"``.
        rules (list, required): Each rule is a mapping with one key:

            * ``not_null: [fields]`` every listed field is present and not null.
            * ``unique: [fields]`` no two records share the combination of these fields
              (later duplicates fail; nulls count as values).
            * ``range: {field: x, min: a, max: b}`` inclusive bounds, either optional;
              null values are skipped (use ``not_null``), incomparable values fail.
            * ``regex: {field: x, pattern: p}`` the whole value (as text) matches ``p``;
              null values are skipped.
            * ``row_count: {min: a, max: b}`` number of records within bounds.
            * ``freshness: {field: x, max_age: "1d", now: ISO time}`` the newest timestamp
              in ``field`` is at most ``max_age`` old; values that are not timestamps fail.
              ``now`` defaults to the task param ``now``, else the current UTC time.
            * ``expr: "amount > 0"`` the expression (see ``transform``) is true for every
              record; a record on which it fails to evaluate counts as failing.

        on_fail (string): ``error`` (default) fails the task with ``DataValidationError``
            (not retried); ``warn`` logs a warning and outputs ``passed: false``.
        now (string): ISO timestamp used as "now" by ``freshness`` rules, for reproducible
            checks.

    Output:
        ``{"passed": bool, "checked": n, "rules": [{"rule": label, "kind": kind, "passed":
        bool, "failures": count, "examples": [{"row": index, ...}, ...up to 3]}],
        "records": records}``; the records pass through unchanged for downstream tasks.

    Errors:
        ``DataValidationError`` listing each failed rule with its failing-row count and up
        to three example rows; ``details["rules"]`` holds the structured results.
    """

    type_name = "validate"
    pure = True
    description = "Check data-quality rules; fail or warn on violations"

    def check_params(self, params: Mapping[str, Any]) -> None:
        records_param(params, self.type_name)
        _parse(params)

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        records = records_param(params, self.type_name)
        rules, on_fail, now = _parse(params)
        # An activity (never a workflow) runs this, so reading the clock is allowed.
        now = now or datetime.now(UTC)
        results = []
        failed: list[str] = []
        for rule in rules:
            outcome = rule.check(records, now)
            results.append(
                {
                    "rule": rule.label,
                    "kind": rule.kind,
                    "passed": outcome.failures == 0,
                    "failures": outcome.failures,
                    "examples": outcome.examples,
                }
            )
            if outcome.failures:
                failed.append(_describe_failure(rule.label, outcome))
        passed = not failed
        if failed:
            summary = (
                f"{len(failed)} of {len(rules)} validation rules failed on "
                f"{len(records)} records:\n" + "\n".join(failed)
            )
            if on_fail == "error":
                raise DataValidationError(summary, rules=results, checked=len(records))
            ctx.log.warning("%s", summary)
        output = {"passed": passed, "checked": len(records), "rules": results, "records": records}
        return HandlerOutput(output, records_in=len(records), records_out=len(records))
