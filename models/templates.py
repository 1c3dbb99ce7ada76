"""The safe template syntax used in pipeline specs.

Task params and pipeline outputs may reference run params and upstream outputs with
sandboxed Jinja2: ``"{{ params.day }}"``, ``"{{ tasks.extract.output.rows }}"``. A string
that is exactly one expression evaluates to the native value (a list stays a list); any
other string renders as text. The sandbox blocks attribute access to Python internals, so a
pipeline file cannot run code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RESULT_ITEMS = 1_000_000
"""Largest string or list a template operation may build (``'a' * n``, padding filters)."""

MAX_EXPONENT = 10_000


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with data keys winning over dict methods and bounded sizes.

    ``{{ tasks.x.output.json.items }}`` must read the key ``items`` of an API response, not
    the ``dict.items`` method; and a template must not be able to allocate gigabytes with
    ``'a' * 10**10`` or ``'x' | center(10**10)`` inside a worker.
    """

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_RESULT_ITEMS:
                    raise SecurityError(
                        f"'*' would build {len(seq) * count} items (limit {MAX_RESULT_ITEMS})"
                    )
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is over the limit of {MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


def _bounded_width(filter_fn: Any) -> Any:
    def bounded(value: Any, width: int = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > MAX_RESULT_ITEMS:
            raise SecurityError(f"width {width} is over the limit of {MAX_RESULT_ITEMS}")
        return filter_fn(value, width, *args, **kwargs)

    return bounded


_ENV = _BoundedSandbox(undefined=StrictUndefined, autoescape=False)
for _name in ("center", "indent", "wordwrap", "truncate"):
    _ENV.filters[_name] = _bounded_width(_ENV.filters[_name])
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)

ROOTS = frozenset({"params", "tasks", "run"})
"""Names a template may use at its top level."""


class TemplateError(ValueError):
    """A template is malformed, references something unknown, or failed to evaluate."""


def is_template(value: str) -> bool:
    """True when the string contains Jinja2 markup."""
    return "{{" in value or "{%" in value


def _parse(text: str) -> nodes.Template:
    try:
        return _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error in {text!r}: {exc.message}") from exc


def references(text: str) -> set[tuple[str, str | None]]:
    """Return the ``(root, name)`` pairs a template refers to.

    ``"{{ tasks.extract.output }}"`` gives ``{("tasks", "extract")}``; a bare ``params``
    gives ``("params", None)``. Top-level names outside :data:`ROOTS` come back with the
    root set to the unknown name so the caller can report it.
    """
    tree = _parse(text)
    found: set[tuple[str, str | None]] = set()
    children: set[int] = set()
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if isinstance(target, nodes.Name) and target.name in assigned:
            children.add(id(target))  # a loop or set variable, not a root
        elif isinstance(target, nodes.Name):
            if isinstance(node, nodes.Getattr):
                found.add((target.name, node.attr))
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                found.add((target.name, node.arg.value))
            else:
                found.add((target.name, None))
            children.add(id(target))
    for name in tree.find_all(nodes.Name):
        if id(name) in children or name.ctx != "load" or name.name in assigned:
            continue
        found.add((name.name, None))
    return found


def iter_strings(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Yield ``(path, string)`` for every string nested in a params structure."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_strings(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from iter_strings(item, (*path, index))


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template nested in ``value`` against ``context``.

    Raises:
        TemplateError: A template failed to parse or evaluate (for example an undefined
            key), with the template text in the message.
    """
    if isinstance(value, str):
        return _render_string(value, context)
    if isinstance(value, Mapping):
        return {key: render_value(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(item, context) for item in value]
    return value


def _render_string(text: str, context: Mapping[str, Any]) -> Any:
    if not is_template(text):
        return text
    try:
        whole = _WHOLE_EXPRESSION.match(text)
        if whole and "{{" not in whole.group("expr") and "}}" not in whole.group("expr"):
            result = _ENV.compile_expression(whole.group("expr").strip(), undefined_to_none=False)(
                **context
            )
            _reject_undefined(result)
            return result
        return _render_bounded(text, context)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error in {text!r}: {exc.message}") from exc
    except UndefinedError as exc:
        raise TemplateError(f"template {text!r} refers to something undefined: {exc}") from exc
    except SecurityError as exc:
        raise TemplateError(f"template {text!r} tried an unsafe operation: {exc}") from exc
    except MemoryError as exc:
        raise TemplateError(f"template {text!r} ran out of memory") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"template {text!r} failed: {type(exc).__name__}: {exc}") from exc


def _render_bounded(text: str, context: Mapping[str, Any]) -> str:
    """Render text, failing once the output passes ``MAX_RESULT_ITEMS`` characters."""
    parts: list[str] = []
    size = 0
    for chunk in _ENV.from_string(text).generate(**context):
        size += len(chunk)
        if size > MAX_RESULT_ITEMS:
            raise SecurityError(f"the rendered text passed {MAX_RESULT_ITEMS} characters")
        parts.append(chunk)
    return "".join(parts)


def _reject_undefined(value: Any) -> None:
    """Raise for an undefined value anywhere in a native result (``[params.missing]``)."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, Mapping):
        for item in value.values():
            _reject_undefined(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_undefined(item)
