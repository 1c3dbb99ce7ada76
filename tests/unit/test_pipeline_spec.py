"""Pipeline spec validation: every mistake is reported, located and explained."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from models.pipeline import (
    PipelineSpec,
    PipelineSpecError,
    SpecIssue,
    find_cycle,
    load_pipeline_text,
    parse_pipeline,
    template_reads,
    topological_order,
)

KNOWN_TYPES = ["fail", "http", "load", "noop", "sql", "transform", "validate"]


def yaml_doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def spec_error(text: str, **kwargs: Any) -> PipelineSpecError:
    """The error ``load_pipeline_text`` raises for ``text`` (fails the test if none)."""
    with pytest.raises(PipelineSpecError) as caught:
        load_pipeline_text(text, **kwargs)
    return caught.value


def dict_error(data: Any, **kwargs: Any) -> PipelineSpecError:
    with pytest.raises(PipelineSpecError) as caught:
        parse_pipeline(data, **kwargs)
    return caught.value


def only_issue(error: PipelineSpecError) -> SpecIssue:
    assert len(error.issues) == 1, str(error)
    return error.issues[0]


def pipeline(*tasks: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A pipeline dict with the given tasks (each a ``noop`` unless it says otherwise)."""
    return {"name": "p", "tasks": [{"type": "noop", **task} for task in tasks], **fields}


# --- parsing -----------------------------------------------------------------------------------


def test_a_valid_yaml_pipeline_loads() -> None:
    spec = load_pipeline_text(
        yaml_doc(
            """
            name: orders
            version: 2
            params:
              day: "2026-11-20"
            tasks:
              - name: extract
                type: http
                params: {url: "http://127.0.0.1/orders?day={{ params.day }}"}
                retry: {max_attempts: 5, initial_interval: 500ms, max_interval: 1m}
                timeout: 1h30m
              - name: clean
                type: transform
                depends_on: extract
                params: {records: "{{ tasks.extract.output.json }}"}
            outputs:
              rows: "{{ tasks.clean.output.count }}"
            """
        ),
        source="orders.yaml",
        known_types=KNOWN_TYPES,
    )
    assert spec.name == "orders"
    assert spec.version == "2"
    assert spec.params["day"].default == "2026-11-20"
    extract, clean = spec.tasks
    assert extract.retry.max_attempts == 5
    assert extract.retry.initial_interval == 0.5
    assert extract.retry.max_interval == 60.0
    assert extract.timeout == 5400.0
    assert clean.depends_on == ["extract"]


def test_json_text_loads_like_yaml() -> None:
    data = pipeline({"name": "a"}, {"name": "b", "depends_on": ["a"]})
    from_json = load_pipeline_text(json.dumps(data, indent=2), source="p.json")
    from_dict = parse_pipeline(data)
    assert from_json == from_dict


def test_malformed_yaml_reports_line_and_column() -> None:
    text = yaml_doc(
        """
        name: x
        tasks:
          - name: a
            type: noop
            params: {a: [1, 2}
        """
    )
    issue = only_issue(error := spec_error(text, source="p.yaml"))
    assert issue.message == "not valid YAML: expected ',' or ']', but got '}'"
    assert issue.line == 5
    assert issue.hint == "column 22"
    assert "p.yaml:5: not valid YAML" in str(error)


def test_malformed_json_reports_line_and_column() -> None:
    text = '{"name": "x",\n "tasks": [\n }'
    issue = only_issue(error := spec_error(text, source="p.json"))
    assert issue.message == "not valid JSON: Expecting value"
    assert (issue.line, issue.hint) == (3, "column 2")
    assert "p.json:3: not valid JSON" in str(error)


def test_the_format_can_be_forced_to_json() -> None:
    # As YAML this would parse (a plain scalar); as JSON it is an error.
    issue = only_issue(spec_error("name: x", source="stdin", fmt="json"))
    assert issue.message.startswith("not valid JSON")
    assert issue.line == 1


@pytest.mark.parametrize(
    ("text", "kind", "line"),
    [("- a\n- b\n", "list", 1), ("just words\n", "str", 1), ("", "NoneType", None)],
)
def test_a_document_that_is_not_a_mapping_is_refused(
    text: str, kind: str, line: int | None
) -> None:
    issue = only_issue(spec_error(text))
    assert issue.message == f"expected a mapping with 'name' and 'tasks', got {kind}"
    assert issue.line == line


def test_a_dict_that_is_not_a_mapping_is_refused() -> None:
    issue = only_issue(dict_error([{"name": "a"}], source="inline"))
    assert issue.message == "expected a mapping with 'name' and 'tasks', got list"
    assert issue.line is None


def test_missing_name_and_tasks_are_reported_together() -> None:
    error = spec_error("description: nothing yet\n", source="p.yaml")
    assert [(i.path, i.message) for i in error.issues] == [
        ("name", "missing required field 'name'"),
        ("tasks", "missing required field 'tasks'"),
    ]
    assert str(error).startswith("invalid pipeline (2 problems):\n  - p.yaml:1: name: missing")


def test_an_empty_task_list_is_refused() -> None:
    issue = only_issue(spec_error("name: x\ntasks: []\n"))
    assert issue.path == "tasks"
    assert issue.line == 2
    assert "at least 1 item" in issue.message


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        ("name: x\ntsks: []\ntasks:\n  - {name: a, type: noop}\n", "tsks", 2),
        (
            "name: x\ntasks:\n  - name: a\n    type: noop\n    colour: red\n",
            "tasks[0] (a).colour",
            5,
        ),
        (
            "name: x\ntasks:\n  - name: a\n    type: noop\n    retry:\n      max_attemps: 3\n",
            "tasks[0] (a).retry.max_attemps",
            6,
        ),
    ],
)
def test_an_unknown_field_is_named_with_its_line(text: str, path: str, line: int) -> None:
    issue = only_issue(error := spec_error(text, source="p.yaml"))
    field = path.rsplit(".", 1)[-1]
    assert issue.message == f"unknown field {field!r}"
    assert (issue.path, issue.line) == (path, line)
    assert f"p.yaml:{line}: {path}: unknown field" in str(error)


def test_a_misspelt_param_spec_key_is_reported() -> None:
    text = "name: x\nparams:\n  day:\n    default: 1\n    requird: true\ntasks:\n  - {name: a, type: noop}\n"
    issue = only_issue(spec_error(text))
    assert (issue.path, issue.line) == ("params.day.requird", 5)


def test_bad_names_are_refused() -> None:
    error = spec_error("name: 'bad name!'\ntasks:\n  - name: 1a\n    type: noop\n")
    assert [(i.path, i.line) for i in error.issues] == [("name", 1), ("tasks[0] (1a).name", 3)]
    assert all("should match pattern" in i.message for i in error.issues)


# --- the graph ---------------------------------------------------------------------------------


def test_a_duplicate_task_names_both_places() -> None:
    text = yaml_doc(
        """
        name: x
        tasks:
          - name: load
            type: noop
          - name: load
            type: noop
        """
    )
    issue = only_issue(spec_error(text))
    assert issue.path == "tasks[1].name"
    assert issue.line == 5
    assert issue.message == "duplicate task name 'load' (first defined at tasks[0])"
    assert issue.hint == "task names must be unique; rename one"


def test_an_unknown_dependency_suggests_the_closest_task() -> None:
    text = yaml_doc(
        """
        name: x
        tasks:
          - name: extract
            type: noop
          - name: clean
            type: noop
            depends_on:
              - extract
              - extrct
        """
    )
    issue = only_issue(spec_error(text))
    assert issue.path == "tasks[1].depends_on[1]"
    assert issue.line == 9
    assert issue.message == "task 'clean' depends on unknown task 'extrct'"
    assert issue.hint == "did you mean 'extract'?"


def test_an_unknown_dependency_without_a_close_match_lists_the_tasks() -> None:
    issue = only_issue(dict_error(pipeline({"name": "a"}, {"name": "b", "depends_on": "zzz"})))
    assert issue.message == "task 'b' depends on unknown task 'zzz'"
    assert issue.hint == "tasks: a, b"


def test_a_self_dependency_is_reported() -> None:
    issue = only_issue(
        spec_error("name: x\ntasks:\n  - name: a\n    type: noop\n    depends_on: a\n")
    )
    assert issue.message == "task 'a' depends on itself"
    assert issue.line == 5


def test_a_cycle_is_printed_in_dependency_order() -> None:
    text = yaml_doc(
        """
        name: x
        tasks:
          - name: a
            type: noop
            depends_on: [b]
          - name: b
            type: noop
            depends_on: [c]
          - name: c
            type: noop
            depends_on: [a]
          - name: d
            type: noop
        """
    )
    issue = only_issue(error := spec_error(text, source="p.yaml"))
    assert issue.message == "dependency cycle: a -> b -> c -> a"
    assert issue.path == "tasks[0].depends_on"
    assert issue.line == 5
    assert issue.hint == "remove one of these dependencies"
    assert "p.yaml:5: tasks[0].depends_on: dependency cycle: a -> b -> c -> a" in str(error)


def test_find_cycle() -> None:
    acyclic = PipelineSpec.model_validate(
        pipeline(
            {"name": "a"},
            {"name": "b", "depends_on": ["a"]},
            {"name": "c", "depends_on": ["a", "b"]},
        )
    )
    assert find_cycle(acyclic) is None
    two = PipelineSpec.model_validate(
        pipeline(
            {"name": "a"}, {"name": "b", "depends_on": ["c"]}, {"name": "c", "depends_on": ["b"]}
        )
    )
    assert find_cycle(two) == ["b", "c"]
    # Unknown dependencies are reported elsewhere; they are not a cycle.
    dangling = PipelineSpec.model_validate(pipeline({"name": "a", "depends_on": ["ghost"]}))
    assert find_cycle(dangling) is None


def test_topological_order_puts_dependencies_first_in_declaration_order() -> None:
    spec = PipelineSpec.model_validate(
        pipeline(
            {"name": "report", "depends_on": ["clean", "stats"]},
            {"name": "clean", "depends_on": ["extract"]},
            {"name": "extract"},
            {"name": "stats", "depends_on": ["extract"]},
            {"name": "audit"},
        )
    )
    assert topological_order(spec) == ["extract", "audit", "clean", "stats", "report"]


def test_topological_order_refuses_a_cycle() -> None:
    spec = PipelineSpec.model_validate(
        pipeline({"name": "a", "depends_on": ["b"]}, {"name": "b", "depends_on": ["a"]})
    )
    with pytest.raises(ValueError, match="dependency cycle"):
        topological_order(spec)


# --- task types --------------------------------------------------------------------------------


def test_an_unknown_task_type_suggests_the_closest() -> None:
    issue = only_issue(
        spec_error("name: x\ntasks:\n  - name: a\n    type: htp\n", known_types=KNOWN_TYPES)
    )
    assert (issue.path, issue.line) == ("tasks[0].type", 4)
    assert issue.message == "unknown task type 'htp' in task 'a'"
    assert issue.hint == "did you mean 'http'?"


def test_an_unknown_task_type_without_a_close_match_lists_known_types() -> None:
    issue = only_issue(
        dict_error(pipeline({"name": "a", "type": "zzzzz"}), known_types=["noop", "http"])
    )
    assert issue.hint == "known types: http, noop"


def test_task_types_are_not_checked_without_known_types() -> None:
    assert parse_pipeline(pipeline({"name": "a", "type": "my_plugin"})).tasks[0].type == "my_plugin"


# --- template references -----------------------------------------------------------------------


def test_a_reference_to_an_undeclared_param_suggests_the_declared_one() -> None:
    issue = only_issue(
        dict_error(
            pipeline({"name": "a", "params": {"url": "x?d={{ params.dya }}"}}, params={"day": "1"})
        )
    )
    assert issue.path == "tasks[0].params.url"
    assert issue.message == "template refers to undeclared param 'dya'"
    assert issue.hint == "did you mean 'day'?"


def test_a_reference_to_an_unknown_task_is_refused() -> None:
    issue = only_issue(
        dict_error(
            pipeline({"name": "a"}, {"name": "b", "params": {"r": "{{ tasks.ghost.output }}"}})
        )
    )
    assert issue.path == "tasks[1].params.r"
    assert issue.message == "template refers to unknown task 'ghost'"
    assert issue.hint == "tasks: a, b"


def test_reading_a_task_that_is_not_upstream_says_to_add_depends_on() -> None:
    issue = only_issue(
        dict_error(
            pipeline({"name": "a"}, {"name": "b", "params": {"r": ["{{ tasks.a.output }}"]}})
        )
    )
    assert issue.path == "tasks[1].params.r[0]"
    assert issue.message == "task 'b' reads the output of 'a', which is not upstream of it"
    assert issue.hint == "add 'a' to depends_on of 'b'"


def test_a_reference_to_an_unknown_root_name_is_refused() -> None:
    issue = only_issue(dict_error(pipeline({"name": "a", "params": {"r": "{{ env.HOME }}"}})))
    assert issue.message == "template refers to unknown name 'env'"
    assert issue.hint == "use params.<name>, tasks.<task>.output or run.<field>"


def test_a_malformed_template_is_reported_at_its_param() -> None:
    issue = only_issue(dict_error(pipeline({"name": "a", "params": {"r": "{{ params.x( }}"}})))
    assert issue.path == "tasks[0].params.r"
    assert issue.message.startswith("template syntax error in '{{ params.x( }}'")


def test_indirect_upstream_tasks_and_outputs_may_be_read() -> None:
    spec = parse_pipeline(
        pipeline(
            {"name": "a"},
            {"name": "b", "depends_on": ["a"]},
            {"name": "c", "depends_on": ["b"], "params": {"r": "{{ tasks.a.output }}"}},
            {"name": "d"},
            outputs={"all": "{{ tasks.c.output }} {{ tasks.d.output }} {{ run.id }}"},
        )
    )
    assert template_reads(spec) == {"a": [], "b": [], "c": ["a"], "d": []}


def test_template_reads_lists_each_tasks_upstream_reads() -> None:
    spec = parse_pipeline(
        pipeline(
            {"name": "x"},
            {"name": "y"},
            {
                "name": "z",
                "depends_on": ["x", "y"],
                "params": {"a": "{{ tasks.y.output }}", "b": ["{{ tasks['x'].output | length }}"]},
            },
        )
    )
    assert template_reads(spec)["z"] == ["x", "y"]


# --- retry and timeouts ------------------------------------------------------------------------


def retry_error(retry: str) -> SpecIssue:
    return only_issue(
        spec_error(f"name: x\ntasks:\n  - name: a\n    type: noop\n    retry: {retry}\n")
    )


def test_max_attempts_zero_is_refused() -> None:
    issue = retry_error("{max_attempts: 0}")
    assert (issue.path, issue.line) == ("tasks[0] (a).retry.max_attempts", 5)
    assert issue.message == "Input should be greater than or equal to 1"


def test_a_backoff_below_one_is_refused() -> None:
    issue = retry_error("{backoff_coefficient: 0.5}")
    assert issue.path == "tasks[0] (a).retry.backoff_coefficient"
    assert issue.message == "Input should be greater than or equal to 1"


def test_max_interval_shorter_than_initial_interval_is_explained() -> None:
    issue = retry_error("{initial_interval: 10s, max_interval: 5s}")
    assert (issue.path, issue.line) == ("tasks[0] (a).retry", 5)
    assert issue.message == (
        "max_interval (5s) is shorter than initial_interval (10s); "
        "raise max_interval or lower initial_interval"
    )


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        ("soon", "expected a duration such as 30, '30s', '5m', '1h30m' or '500ms', got 'soon'"),
        ("-5s", "expected a duration such as 30, '30s', '5m', '1h30m' or '500ms', got '-5s'"),
        ("-5", "a duration cannot be negative, got -5"),
        ("0s", "Input should be greater than 0"),
        ("8d", "Input should be less than or equal to 604800"),
    ],
)
def test_bad_timeouts_are_refused(timeout: str, message: str) -> None:
    issue = only_issue(
        spec_error(f"name: x\ntasks:\n  - name: a\n    type: noop\n    timeout: {timeout}\n")
    )
    assert (issue.path, issue.line) == ("tasks[0] (a).timeout", 5)
    assert issue.message == message


@pytest.mark.parametrize("field", ["heartbeat_timeout: inf", "cache: {enabled: true, ttl: inf}"])
def test_infinite_durations_are_refused(field: str) -> None:
    spec_error(f"name: x\ntasks:\n  - name: a\n    type: noop\n    {field}\n")


# --- many problems at once, exact lines --------------------------------------------------------

ORDERS_WITH_MISTAKES = yaml_doc(
    """
    name: orders
    params:
      day: "2026-11-20"
    tasks:
      - name: extract
        type: http
        params:
          url: "http://x/{{ params.dya }}"
      - name: clean
        type: transform
        depends_on:
          - extract
          - extrct
        params:
          records: "{{ tasks.load.output }}"
      - name: load
        type: lod
        depends_on: [clean]
    outputs:
      rows: "{{ tasks.clen.output.count }}"
    """
)


def test_every_problem_is_reported_in_one_error_with_exact_lines() -> None:
    error = spec_error(ORDERS_WITH_MISTAKES, source="orders.yaml", known_types=KNOWN_TYPES)
    located = {(i.line, i.path): (i.message, i.hint) for i in error.issues}
    assert located == {
        (17, "tasks[2].type"): ("unknown task type 'lod' in task 'load'", "did you mean 'load'?"),
        (13, "tasks[1].depends_on[1]"): (
            "task 'clean' depends on unknown task 'extrct'",
            "did you mean 'extract'?",
        ),
        (8, "tasks[0].params.url"): (
            "template refers to undeclared param 'dya'",
            "did you mean 'day'?",
        ),
        (15, "tasks[1].params.records"): (
            "task 'clean' reads the output of 'load', which is not upstream of it",
            "add 'load' to depends_on of 'clean'",
        ),
        (20, "outputs.rows"): ("template refers to unknown task 'clen'", "did you mean 'clean'?"),
    }
    text = str(error)
    assert text.startswith("invalid pipeline (5 problems):\n")
    assert (
        "  - orders.yaml:13: tasks[1].depends_on[1]: task 'clean' depends on unknown task "
        "'extrct' (did you mean 'extract'?)"
    ) in text.splitlines()


def test_schema_problems_are_reported_together_with_exact_lines() -> None:
    text = yaml_doc(
        """
        name: x
        tasks:
          - name: a
            type: noop
            retry:
              max_attempts: 0
          - name: b
            type: noop
            timeout: soon
            colour: red
        """
    )
    error = spec_error(text)
    assert [(i.line, i.path) for i in error.issues] == [
        (6, "tasks[0] (a).retry.max_attempts"),
        (9, "tasks[1] (b).timeout"),
        (10, "tasks[1] (b).colour"),
    ]


def test_json_problems_carry_lines_too() -> None:
    data = pipeline({"name": "a"}, {"name": "b", "depends_on": ["a", "zz"]})
    text = json.dumps(data, indent=2)
    issue = only_issue(spec_error(text, source="p.json"))
    expected = text.splitlines().index('        "zz"') + 1
    assert (issue.path, issue.line) == ("tasks[1].depends_on[1]", expected)


@pytest.mark.xfail(
    strict=True,
    reason="line numbers for JSON come from a YAML composer, which refuses tab indentation, so "
    "a tab-indented JSON file (json.dump(indent='\\t')) gets no line numbers at all",
)
def test_tab_indented_json_problems_carry_lines() -> None:
    text = json.dumps(pipeline({"name": "a", "colour": 1}), indent="\t")
    issue = only_issue(spec_error(text, source="p.json"))
    assert issue.line == text.splitlines().index('\t\t\t"colour": 1') + 1


# --- params ------------------------------------------------------------------------------------


def test_param_shorthand_and_full_form() -> None:
    spec = parse_pipeline(
        pipeline(
            {"name": "a"},
            params={
                "day": "2026-11-20",
                "limits": [1, 2],
                "empty": {},
                "region": {"default": "eu", "description": "where"},
                "token": {"required": True},
            },
        )
    )
    assert {k: (v.default, v.required) for k, v in spec.params.items()} == {
        "day": ("2026-11-20", False),
        "limits": ([1, 2], False),
        "empty": ({}, False),
        "region": ("eu", False),
        "token": (None, True),
    }
    assert spec.params["region"].description == "where"


def test_resolve_params_merges_given_over_defaults() -> None:
    spec = parse_pipeline(pipeline({"name": "a"}, params={"day": "2026-11-20", "n": 1}))
    assert spec.resolve_params({"n": 5}) == {"day": "2026-11-20", "n": 5}
    assert spec.resolve_params({}) == {"day": "2026-11-20", "n": 1}


def test_resolve_params_reports_unknown_and_missing_params_together() -> None:
    spec = parse_pipeline(pipeline({"name": "a"}, params={"day": {"required": True}, "n": 1}))
    with pytest.raises(PipelineSpecError) as caught:
        spec.resolve_params({"dya": "2026-11-20", "zzz": 1})
    assert [(i.path, i.message, i.hint) for i in caught.value.issues] == [
        ("params.dya", "unknown param 'dya'", "did you mean 'day'?"),
        ("params.zzz", "unknown param 'zzz'", "declared params: ['day', 'n']"),
        ("params.day", "required param 'day' was not given", "pass it, e.g. --param day=VALUE"),
    ]
    assert "pipeline 'p': params.day: required param 'day' was not given" in str(caught.value)


# --- identity ----------------------------------------------------------------------------------


def test_sha256_is_stable_for_the_same_spec() -> None:
    data = pipeline({"name": "a", "params": {"x": 1, "y": 2}}, params={"day": "1"})
    reordered = {
        "tasks": [{"params": {"y": 2, "x": 1}, "type": "noop", "name": "a"}],
        "params": {"day": {"default": "1"}},
        "name": "p",
    }
    digest = parse_pipeline(data).sha256()
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert parse_pipeline(data).sha256() == digest
    assert parse_pipeline(reordered).sha256() == digest
    as_yaml = (
        "name: p\nparams: {day: '1'}\ntasks:\n  - {name: a, type: noop, params: {x: 1, y: 2}}\n"
    )
    assert load_pipeline_text(as_yaml).sha256() == digest


def test_sha256_changes_when_the_spec_changes() -> None:
    base = parse_pipeline(pipeline({"name": "a"}, params={"day": "1"})).sha256()
    assert parse_pipeline(pipeline({"name": "a"}, params={"day": "2"})).sha256() != base
    assert (
        parse_pipeline(pipeline({"name": "a", "timeout": 5}, params={"day": "1"})).sha256() != base
    )
