"""Templates in task params: native values, text rendering, references and the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from models.templates import TemplateError, is_template, iter_strings, references, render_value

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def context() -> dict[str, Any]:
    """What a task sees: run params, upstream outputs and run facts."""
    return {
        "params": {"day": "2026-11-20", "n": 3, "tags": ["a", "b"]},
        "tasks": {
            "extract": {"output": {"json": [{"id": 1}, {"id": 2}], "count": 2, "status": 200}},
        },
        "run": {"id": "pipeline/orders/1", "pipeline": "orders", "attempt": 1},
    }


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ tasks.extract.output.json }}", [{"id": 1}, {"id": 2}]),
        ("{{ params.n }}", 3),
        ("  {{ params.n }}\n", 3),
        ("{{ tasks.extract.output }}", {"json": [{"id": 1}, {"id": 2}], "count": 2, "status": 200}),
        ("{{ params.n * 2 }}", 6),
        ("{{ tasks.extract.output.status == 200 }}", True),
        ("{{ tasks['extract'].output['count'] }}", 2),
    ],
)
def test_a_whole_expression_keeps_its_native_type(
    template: str, expected: Any, context: dict[str, Any]
) -> None:
    result = render_value(template, context)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("day={{ params.day }}", "day=2026-11-20"),
        ("{{ params.n }}{{ params.n }}", "33"),
        ("{{ params.n }} of {{ run.pipeline }}", "3 of orders"),
        ("{% for t in params.tags %}{{ t }};{% endfor %}", "a;b;"),
    ],
)
def test_mixed_text_renders_as_a_string(
    template: str, expected: str, context: dict[str, Any]
) -> None:
    assert render_value(template, context) == expected


def test_filters_apply_to_native_values(context: dict[str, Any]) -> None:
    assert render_value("{{ tasks.extract.output.json | length }}", context) == 2
    assert render_value("{{ params.tags | join(',') | upper }}", context) == "A,B"
    assert render_value("rows: {{ tasks.extract.output.json | length }}", context) == "rows: 2"


def test_nested_params_render_and_non_templates_pass_through(context: dict[str, Any]) -> None:
    params = {
        "url": "http://127.0.0.1/orders?day={{ params.day }}",
        "records": "{{ tasks.extract.output.json }}",
        "limits": [1, "{{ params.n }}", None, True],
        "plain": "no markup here",
        "braces": "a { b } c",
    }
    assert render_value(params, context) == {
        "url": "http://127.0.0.1/orders?day=2026-11-20",
        "records": [{"id": 1}, {"id": 2}],
        "limits": [1, 3, None, True],
        "plain": "no markup here",
        "braces": "a { b } c",
    }


def test_templates_cannot_mutate_the_context(context: dict[str, Any]) -> None:
    before = json.dumps(context, sort_keys=True)
    for template in ("{{ params.tags.append('c') }}", "{{ tasks.extract.output.update(count=0) }}"):
        with pytest.raises(TemplateError, match="unsafe operation"):
            render_value(template, context)
    assert json.dumps(context, sort_keys=True) == before


@pytest.mark.parametrize("template", ["{{ params.missing }}", "day {{ params.missing }}!"])
def test_an_undefined_name_fails_naming_the_template(
    template: str, context: dict[str, Any]
) -> None:
    with pytest.raises(TemplateError) as caught:
        render_value(template, context)
    message = str(caught.value)
    assert repr(template) in message
    assert "undefined" in message
    assert "'missing'" in message


def test_an_unknown_upstream_task_fails_naming_the_template(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match=r"'\{\{ tasks\.load\.output \}\}'.*undefined"):
        render_value("{{ tasks.load.output }}", context)


@pytest.mark.parametrize(
    "template",
    [
        "{{ [params.missing] }}",
        '{{ {"a": params.missing} }}',
        "{{ params.tags | map(attribute='x') | list }}",
    ],
)
def test_an_undefined_value_inside_a_native_result_fails(
    template: str, context: dict[str, Any]
) -> None:
    with pytest.raises(TemplateError, match="undefined"):
        render_value(template, context)


def test_a_key_named_like_a_dict_method_reads_the_data() -> None:
    # {"items": [...]} is a very common shape of a JSON API response.
    ctx = {"tasks": {"extract": {"output": {"json": {"items": [1, 2, 3]}}}}, "params": {}}
    assert render_value("{{ tasks.extract.output.json.items | length }}", ctx) == 3


def test_evaluation_errors_are_template_errors(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match=r"'\{\{ params\.n / 0 \}\}' failed: ZeroDivisionError"):
        render_value("{{ params.n / 0 }}", context)


def test_a_syntax_error_names_the_template(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match=r"template syntax error in '\{\{ params\.day'"):
        render_value("{{ params.day", context)


# --- references --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ tasks.extract.output.json }}", {("tasks", "extract")}),
        ("{{ tasks['extract'].output }}", {("tasks", "extract")}),
        ("{{ params.day }}/{{ run.id }}", {("params", "day"), ("run", "id")}),
        ("{{ params }}", {("params", None)}),
        ("{{ params[key] }}", {("params", None), ("key", None)}),
        ("{{ tasks.a.output | length }} {{ tasks.b.output }}", {("tasks", "a"), ("tasks", "b")}),
        ("{{ foo.bar }}", {("foo", "bar")}),
        ("{% set d = params.day %}{{ d }}", {("params", "day")}),
        ("{% for t in params.tags %}{{ t }}{% endfor %}", {("params", "tags")}),
    ],
)
def test_references_lists_roots_and_names(
    template: str, expected: set[tuple[str, str | None]]
) -> None:
    assert references(template) == expected


def test_references_ignore_attributes_of_loop_variables() -> None:
    template = "{% for r in tasks.extract.output.json %}{{ r.id }},{% endfor %}"
    assert references(template) == {("tasks", "extract")}


def test_references_of_a_malformed_template_raise_template_error() -> None:
    with pytest.raises(TemplateError, match="template syntax error"):
        references("{{ tasks.a.output( }}")


def test_is_template_and_iter_strings() -> None:
    assert is_template("{{ x }}")
    assert is_template("{% if x %}y{% endif %}")
    assert not is_template("{ x }")
    params = {"a": "x", "b": [1, "y", {"c": "z"}], "d": 5}
    assert list(iter_strings(params)) == [(("a",), "x"), (("b", 1), "y"), (("b", 2, "c"), "z")]


# --- the sandbox -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ params.__class__ }}",
        "{{ params.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ [].__class__.mro() }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ run.id.__class__.__base__ }}",
        "{{ '{0.__class__}'.format(params) }}",
        "{{ params.tags.__len__() }}",
        "{{ params.tags.append(1) }}",
        "x{{ params.__class__ }}",
    ],
)
def test_the_sandbox_blocks_python_internals(template: str, context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError) as caught:
        render_value(template, context)
    assert "unsafe" in str(caught.value)
    assert repr(template) in str(caught.value)


def test_huge_ranges_are_refused_at_once(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="Range too big"):
        render_value("{{ range(10**9) | list }}", context)


_BOUNDED_RENDER = textwrap.dedent(
    """
    import json, resource, sys
    # 1 GiB of address space: an attempt to build a multi-gigabyte value fails at once
    # instead of exhausting the machine.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from models.templates import render_value
    try:
        value = render_value(sys.argv[1], {"params": {}, "tasks": {}, "run": {}})
        print(json.dumps({"error": None, "size": len(str(value))}))
    except BaseException as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)[:300]}))
    """
)


def render_in_a_box(template: str, timeout: float) -> dict[str, Any]:
    """Render in a child process with 1 GiB of memory and a deadline, so abuse stays bounded."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _BOUNDED_RENDER, template],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "message": f"still rendering after {timeout}s"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_box_renders_ordinary_templates() -> None:
    assert render_in_a_box("{{ 'a' * 10 }}", timeout=30) == {"error": None, "size": 10}


@pytest.mark.parametrize(
    "template",
    ["{{ 'a' * 10**10 }}", "{{ [0] * 10**10 }}", "{{ 'ab' | center(10**10) }}"],
)
def test_templates_cannot_allocate_unbounded_memory(template: str) -> None:
    outcome = render_in_a_box(template, timeout=30)
    assert outcome["error"] == "TemplateError", outcome


def test_templates_cannot_render_unbounded_output() -> None:
    template = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    outcome = render_in_a_box(template, timeout=5)
    assert outcome["error"] == "TemplateError", outcome
