"""The ``transform`` task: reshape a list of records with ordered, declarative steps."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from activities.tasks.base import (
    ExpressionError,
    HandlerOutput,
    TaskConfigError,
    TaskContext,
    TaskHandler,
)
from activities.tasks.expressions import (
    CompiledExpression,
    compile_expression,
    to_date,
    to_datetime,
    to_number,
    to_text,
)

Record = dict[str, Any]
Records = list[Record]

STEP_KINDS = ("select", "rename", "filter", "derive", "drop", "dedupe", "sort", "limit", "cast")
SHORTHAND_ORDER = ("select", "rename", "filter", "derive")
"""Top-level step params, applied in this order when ``steps`` is absent."""

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off", ""})


class _RecordFailure(Exception):
    """A step failed on one record; turned into a task error naming step and record."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Step:
    """One parsed step: ``label`` names it in errors (``step 2 (filter)``)."""

    label: str
    apply: Callable[[Records], Records]


def records_param(params: Mapping[str, Any], task_type: str) -> Records:
    """``params["records"]`` checked to be a list of objects.

    Raises:
        TaskConfigError: Missing, not a list, or an item that is not an object (with its
            index).
    """
    records = params.get("records")
    if not isinstance(records, list):
        raise TaskConfigError(
            f"{task_type} task needs param 'records' as a list of objects, usually a template "
            f"such as '{{{{ tasks.extract.output.json }}}}'; got {type(records).__name__}"
        )
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise TaskConfigError(
                f"{task_type} task param 'records': item {index} is a "
                f"{type(record).__name__}, not an object: {record!r:.80}"
            )
    return records


def _fields(value: Any, label: str, what: str = "a list of field names") -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(f, str) for f in value):
        raise TaskConfigError(f"transform {label} needs {what}, got {value!r:.80}")
    return value


def _str_map(value: Any, label: str, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not value:
        raise TaskConfigError(f"transform {label} needs {what}, got {value!r:.80}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TaskConfigError(f"transform {label} needs {what}; {key!r}: {item!r:.60} is not")
    return dict(value)


def _compile(text: Any, label: str) -> CompiledExpression:
    if not isinstance(text, str):
        raise TaskConfigError(f"transform {label} needs an expression string, got {text!r:.80}")
    try:
        return compile_expression(text)
    except ExpressionError as exc:
        raise ExpressionError(f"transform {label}: {exc}", **exc.details) from None


def _select(fields: list[str]) -> Callable[[Records], Records]:
    return lambda records: [{f: r.get(f) for f in fields} for r in records]


def _rename(mapping: dict[str, str]) -> Callable[[Records], Records]:
    def apply(records: Records) -> Records:
        out = []
        for record in records:
            renamed = {mapping.get(k, k): v for k, v in record.items() if k not in mapping}
            renamed.update({mapping[k]: v for k, v in record.items() if k in mapping})
            out.append(renamed)
        return out

    return apply


def _evaluate(expression: CompiledExpression, index: int, record: Mapping[str, Any]) -> Any:
    try:
        return expression.evaluate(record)
    except ExpressionError as exc:
        raise _RecordFailure(index, str(exc)) from None


def _filter(expression: CompiledExpression) -> Callable[[Records], Records]:
    return lambda records: [r for i, r in enumerate(records) if _evaluate(expression, i, r)]


def _derive(derived: dict[str, CompiledExpression]) -> Callable[[Records], Records]:
    def apply(records: Records) -> Records:
        out = []
        for index, record in enumerate(records):
            new = dict(record)
            for field, expression in derived.items():
                # Each derived field sees the ones derived before it.
                new[field] = _evaluate(expression, index, new)
            out.append(new)
        return out

    return apply


def _drop(fields: list[str]) -> Callable[[Records], Records]:
    dropped = set(fields)
    return lambda records: [{k: v for k, v in r.items() if k not in dropped} for r in records]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _dedupe(fields: list[str]) -> Callable[[Records], Records]:
    def apply(records: Records) -> Records:
        seen: set[str] = set()
        out = []
        for record in records:
            key = _key([record.get(f) for f in fields])
            if key not in seen:
                seen.add(key)
                out.append(record)
        return out

    return apply


def _sort_value(value: Any) -> tuple[int, Any]:
    # Rank by kind first so mixed columns sort instead of raising TypeError.
    if isinstance(value, bool | int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, _key(value))


def _sort(keys: list[tuple[str, bool]]) -> Callable[[Records], Records]:
    def apply(records: Records) -> Records:
        out = list(records)
        # Stable sorts from the last key to the first give a multi-key sort in which each key
        # has its own direction; missing values go last either way.
        for field, desc in reversed(keys):
            present = [r for r in out if r.get(field) is not None]
            missing = [r for r in out if r.get(field) is None]
            present.sort(key=lambda r: _sort_value(r[field]), reverse=desc)
            out = present + missing
        return out

    return apply


def _parse_sort(value: Any, label: str) -> list[tuple[str, bool]]:
    items = value if isinstance(value, list) else [value]
    keys: list[tuple[str, bool]] = []
    for item in items:
        if isinstance(item, str) and item:
            keys.append((item, False))
        elif (
            isinstance(item, Mapping)
            and isinstance(item.get("field"), str)
            and set(item) <= {"field", "desc"}
            and isinstance(item.get("desc", False), bool)
        ):
            keys.append((item["field"], item.get("desc", False)))
        else:
            raise TaskConfigError(
                f"transform {label} needs a field name or a list of field names or "
                f"{{field: name, desc: true|false}} items, got {item!r:.80}"
            )
    if not keys:
        raise TaskConfigError(f"transform {label} needs at least one field to sort by")
    return keys


def cast_value(value: Any, kind: str) -> Any:
    """Convert one value to ``kind`` (``None`` stays ``None``).

    Raises:
        ValueError: The value cannot be converted.
        TypeError: The value has a type that cannot be converted.
    """
    if value is None:
        return None
    if kind == "str":
        return to_text(value)
    if kind in ("int", "float"):
        number = to_number(value) if isinstance(value, str) else value
        if number is None or isinstance(number, bool) or not isinstance(number, int | float):
            raise ValueError(f"{value!r:.40} is not a number")
        if kind == "float":
            return float(number)
        if isinstance(number, float) and not number.is_integer():
            raise ValueError(f"{value!r:.40} is not a whole number; cast to float or round it")
        return int(number)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value != 0
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"{value!r:.40} is not a boolean (true/false, yes/no, 1/0)")
    if kind == "date":
        return to_date(value)
    return to_datetime(value)


CAST_KINDS = ("int", "float", "str", "bool", "date", "datetime")


def _cast(casts: dict[str, str]) -> Callable[[Records], Records]:
    def apply(records: Records) -> Records:
        out = []
        for index, record in enumerate(records):
            new = dict(record)
            for field, kind in casts.items():
                if field in new:
                    try:
                        new[field] = cast_value(new[field], kind)
                    except (TypeError, ValueError) as exc:
                        raise _RecordFailure(
                            index, f"cannot cast field {field!r} to {kind}: {exc}"
                        ) from None
            out.append(new)
        return out

    return apply


def _limit(count: Any, label: str) -> Callable[[Records], Records]:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise TaskConfigError(f"transform {label} needs a whole number >= 0, got {count!r:.40}")
    return lambda records: records[:count]


def build_step(kind: str, value: Any, label: str) -> Step:
    """Parse one step.

    Raises:
        TaskConfigError: The step's value has the wrong shape.
        ExpressionError: An expression in it does not compile.
    """
    apply: Callable[[Records], Records]
    if kind == "select":
        apply = _select(_fields(value, label))
    elif kind == "rename":
        apply = _rename(_str_map(value, label, "a mapping of old field name to new name"))
    elif kind == "filter":
        apply = _filter(_compile(value, label))
    elif kind == "derive":
        exprs = _str_map(value, label, "a mapping of new field name to expression")
        apply = _derive(
            {field: _compile(text, f"{label} field {field!r}") for field, text in exprs.items()}
        )
    elif kind == "drop":
        apply = _drop(_fields(value, label))
    elif kind == "dedupe":
        apply = _dedupe(_fields(value, label, "the list of key fields"))
    elif kind == "sort":
        apply = _sort(_parse_sort(value, label))
    elif kind == "limit":
        apply = _limit(value, label)
    else:
        casts = _str_map(value, label, f"a mapping of field name to one of {', '.join(CAST_KINDS)}")
        for field, target in casts.items():
            if target not in CAST_KINDS:
                raise TaskConfigError(
                    f"transform {label}: field {field!r} cannot be cast to {target!r}; "
                    f"use one of {', '.join(CAST_KINDS)}"
                )
        apply = _cast(casts)
    return Step(label, apply)


def parse_steps(params: Mapping[str, Any]) -> list[Step]:
    """The ordered steps of a ``transform`` task, from ``steps`` or the shorthand params.

    Raises:
        TaskConfigError: Unknown params, a malformed step, or both forms at once.
        ExpressionError: An expression does not compile.
    """
    allowed = {"records", "steps", *SHORTHAND_ORDER}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TaskConfigError(
            f"transform task has unknown params {unknown}; put {', '.join(STEP_KINDS)} steps "
            "in 'steps' (only select, rename, filter and derive may be given at top level)"
        )
    shorthand = [k for k in SHORTHAND_ORDER if params.get(k) is not None]
    if "steps" not in params:
        return [build_step(kind, params[kind], f"param {kind!r}") for kind in shorthand]
    if shorthand:
        raise TaskConfigError(
            f"transform task has both 'steps' and top-level {shorthand}; move them into 'steps'"
        )
    steps = params["steps"]
    if not isinstance(steps, list):
        raise TaskConfigError(f"transform task param 'steps' must be a list, got {steps!r:.80}")
    parsed = []
    for index, step in enumerate(steps, start=1):
        if not isinstance(step, Mapping) or len(step) != 1:
            raise TaskConfigError(
                f"transform step {index} must be a mapping with exactly one of "
                f"{', '.join(STEP_KINDS)}, got {step!r:.80}"
            )
        ((kind, value),) = step.items()
        if kind not in STEP_KINDS:
            raise TaskConfigError(
                f"transform step {index} has unknown kind {kind!r}; "
                f"use one of {', '.join(STEP_KINDS)}"
            )
        parsed.append(build_step(kind, value, f"step {index} ({kind})"))
    return parsed


def apply_steps(steps: list[Step], records: Records) -> Records:
    """Run the steps in order over copies of the records.

    Raises:
        ExpressionError: A step failed on a record; the message names the step and the
            record's index in that step's input.
    """
    current = [dict(r) for r in records]
    for step in steps:
        try:
            current = step.apply(current)
        except _RecordFailure as exc:
            raise ExpressionError(
                f"transform {step.label} failed on record {exc.index}: {exc}",
                step=step.label,
                record=exc.index,
            ) from None
    return current


class TransformHandler(TaskHandler):
    """Reshape a list of records: select, rename, filter, derive, cast, sort, dedupe...

    Params:
        records (list of objects, required): The input, usually a template such as
            ``"{{ tasks.extract.output.json }}"``.
        steps (list): Steps applied in order; each is a mapping with exactly one key:

            * ``select: [fields]`` keep only these fields (absent ones become null).
            * ``rename: {old: new}`` rename fields.
            * ``filter: "expr"`` keep records for which the expression is true.
            * ``derive: {field: "expr"}`` set fields from expressions, in order (a later
              expression sees the fields derived before it).
            * ``drop: [fields]`` remove fields.
            * ``dedupe: [fields]`` keep the first record of each combination of values.
            * ``sort: "field"``, ``[field, ...]`` or ``[{field: x, desc: true}, ...]`` stable
              sort; missing values last, numbers before strings.
            * ``limit: n`` keep the first ``n`` records.
            * ``cast: {field: type}`` convert values to ``int`` (whole numbers only),
              ``float``, ``str``, ``bool`` (true/false, yes/no, 1/0), ``date``
              (``"YYYY-MM-DD"``) or ``datetime`` (ISO, UTC); ``to_number`` rules apply to
              text such as ``"$1,234.50"``; null stays null.

        select, rename, filter, derive: Without ``steps``, these may be given at top level;
            they then apply in that fixed order: select, rename, filter, derive.

    Expressions use the safe language of :mod:`activities.tasks.expressions` (fields by
    name, arithmetic, comparisons, a few functions; no Python code).

    Output:
        ``{"records": [...], "count": n}``; ``records_in``/``records_out`` are the input and
        output counts. Input records are not modified.

    Errors:
        ``TaskConfigError`` for malformed steps, ``ExpressionError`` for an expression that
        does not compile or fails on a record (naming the step and the record index); both
        are not retried.
    """

    type_name = "transform"
    pure = True
    description = "Select, rename, filter, derive, cast, sort and dedupe records"

    def check_params(self, params: Mapping[str, Any]) -> None:
        records_param(params, self.type_name)
        parse_steps(params)

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        records = records_param(params, self.type_name)
        result = apply_steps(parse_steps(params), records)
        return HandlerOutput(
            {"records": result, "count": len(result)},
            records_in=len(records),
            records_out=len(result),
        )
