"""The pipeline spec: a DAG of typed tasks, written as YAML, JSON or a Python dict.

Example::

    name: orders
    params:
      day: "2026-11-20"
    tasks:
      - name: extract
        type: http
        params: {url: "http://127.0.0.1:8765/orders?day={{ params.day }}"}
        retry: {max_attempts: 5, initial_interval: 1s}
      - name: clean
        type: transform
        depends_on: [extract]
        params: {records: "{{ tasks.extract.output.json }}", filter: "amount > 0"}
    outputs:
      rows: "{{ tasks.clean.output.count }}"

:func:`parse_pipeline` and :func:`load_pipeline_text` check structure, the graph (unknown
and duplicate tasks, cycles), retry and timeout values, and template references, and raise
one :class:`PipelineSpecError` listing every problem with its location (file and line for
YAML and JSON). Task *types* are checked against the handler registry by the caller.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.durations import Seconds
from models.templates import ROOTS, TemplateError, iter_strings, references

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PIPELINE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

TaskMode = Literal["auto", "local", "activity"]
PARAM_SPEC_KEYS = frozenset({"default", "required", "description"})


class RetrySpec(BaseModel):
    """How Temporal retries a task's activity.

    Attributes:
        max_attempts: Attempts in total, the first included (1 = no retry).
        initial_interval: Wait before the first retry.
        backoff_coefficient: Multiplier applied to the wait after each retry.
        max_interval: Upper bound on the wait between attempts.
        non_retryable_errors: Error type names that end the task at once.
    """

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(3, ge=1, le=1000)
    initial_interval: Seconds = Field(1.0, gt=0, le=86400)
    backoff_coefficient: float = Field(2.0, ge=1.0, le=100.0)
    max_interval: Seconds = Field(60.0, gt=0, le=86400 * 7)
    non_retryable_errors: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _interval_order(self) -> RetrySpec:
        if self.max_interval < self.initial_interval:
            raise ValueError(
                f"max_interval ({self.max_interval:g}s) is shorter than initial_interval "
                f"({self.initial_interval:g}s); raise max_interval or lower initial_interval"
            )
        return self


class CacheSpec(BaseModel):
    """Content-addressed result cache of one task.

    The key is the SHA-256 of the task type, its rendered params and the handler's version,
    so a task whose inputs did not change returns its stored output without running.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    ttl: Seconds = Field(3600.0, gt=0)


class TaskSpec(BaseModel):
    """One node of the DAG.

    Attributes:
        name: Unique identifier inside the pipeline (letters, digits, underscore).
        type: Handler name (``http``, ``sql``, ``transform``, ... or an entry point).
        params: Handler parameters; strings may hold templates.
        depends_on: Tasks that must succeed before this one starts.
        retry: Retry policy of the task's activity.
        timeout: Start-to-close timeout of one attempt.
        heartbeat_timeout: For long tasks: the activity must heartbeat this often. Unset
            means 30 s (three runner heartbeat periods) for tasks whose timeout exceeds a minute.
            The runner heartbeats on the task's behalf at a third of this timeout.
        cache: Result cache settings.
        mode: ``local`` runs as a local activity (no server round trip; for short, pure
            tasks), ``activity`` as a regular activity, ``auto`` decides by type and timeout.
        description: Free text shown in the UI.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    type: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeout: Seconds = Field(300.0, gt=0, le=86400 * 7)
    heartbeat_timeout: Seconds | None = Field(None, gt=0)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    mode: TaskMode = "auto"
    description: str = ""

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_dependency(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ParamSpec(BaseModel):
    """A pipeline parameter; ``required`` ones have no default and must be given."""

    model_config = ConfigDict(extra="forbid")

    default: Any = None
    required: bool = False
    description: str = ""


class PipelineSpec(BaseModel):
    """A whole pipeline: params, tasks and the outputs the run returns."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=PIPELINE_NAME_PATTERN, max_length=100)
    version: str = "1"
    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    tasks: list[TaskSpec] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)
    max_parallel: int | None = Field(None, ge=1, le=1000)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("params", mode="before")
    @classmethod
    def _param_shorthand(cls, value: Any) -> Any:
        # `params: {day: "2026-11-20"}` is shorthand for `{day: {default: "2026-11-20"}}`.
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for key, item in value.items():
            # A mapping that uses any ParamSpec key is a ParamSpec, so a misspelt key
            # (`requird`) is reported instead of becoming part of a default value.
            is_spec = isinstance(item, Mapping) and bool(set(item) & PARAM_SPEC_KEYS)
            out[key] = item if is_spec else {"default": item}
        return out

    def task(self, name: str) -> TaskSpec:
        """Return the task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def sha256(self) -> str:
        """A stable content hash of the spec (identical specs, identical hash)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``given`` over the declared defaults.

        Raises:
            PipelineSpecError: An undeclared param was given or a required one is missing.
        """
        issues: list[SpecIssue] = []
        for key in given:
            if key not in self.params:
                issues.append(
                    SpecIssue(
                        path=f"params.{key}",
                        message=f"unknown param {key!r}",
                        hint=_suggest(key, self.params)
                        or f"declared params: {sorted(self.params)}",
                    )
                )
        merged: dict[str, Any] = {}
        for key, spec in self.params.items():
            if key in given:
                merged[key] = given[key]
            elif spec.required:
                issues.append(
                    SpecIssue(
                        path=f"params.{key}",
                        message=f"required param {key!r} was not given",
                        hint=f"pass it, e.g. --param {key}=VALUE",
                    )
                )
            else:
                merged[key] = spec.default
        if issues:
            raise PipelineSpecError(issues, source=f"pipeline {self.name!r}")
        return merged


class SpecIssue(BaseModel):
    """One problem found in a pipeline spec, located as precisely as the input allows."""

    path: str
    message: str
    line: int | None = None
    hint: str = ""

    def render(self, source: str | None) -> str:
        where = source or "<pipeline>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class PipelineSpecError(ValueError):
    """A pipeline spec is invalid. ``issues`` lists every problem found, each located."""

    def __init__(self, issues: Sequence[SpecIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        lines = [issue.render(source) for issue in self.issues]
        count = len(lines)
        head = f"invalid pipeline ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  - {line}" for line in lines)]))


# ---------------------------------------------------------------------------------------------
# Loading with locations


def load_pipeline_text(
    text: str,
    source: str = "<pipeline>",
    fmt: str | None = None,
    known_types: Iterable[str] | None = None,
) -> PipelineSpec:
    """Parse and validate a pipeline from YAML or JSON text.

    Args:
        text: The document.
        source: Name used in error messages (usually the file path).
        fmt: ``"yaml"`` or ``"json"``; guessed from ``source``'s suffix, YAML otherwise
            (JSON is valid YAML, so YAML parsing also covers JSON with line numbers).
        known_types: When given, task types outside it are reported.

    Raises:
        PipelineSpecError: The text does not parse or the spec is invalid.
    """
    if fmt == "json" or (fmt is None and source.endswith(".json")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PipelineSpecError(
                [
                    SpecIssue(
                        path="",
                        message=f"not valid JSON: {exc.msg}",
                        line=exc.lineno,
                        hint=f"column {exc.colno}",
                    )
                ],
                source,
            ) from exc
        lines = _yaml_line_map(text) if data is not None else {}
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PipelineSpecError(
                [yaml_issue(exc)],
                source,
            ) from exc
        lines = _yaml_line_map(text)
    return parse_pipeline(data, source=source, lines=lines, known_types=known_types)


def parse_pipeline(
    data: Any,
    source: str | None = None,
    lines: Mapping[tuple[str | int, ...], int] | None = None,
    known_types: Iterable[str] | None = None,
) -> PipelineSpec:
    """Validate a pipeline given as a dict.

    Args:
        data: The parsed document.
        source: Name used in error messages.
        lines: Map from a path such as ``("tasks", 2, "depends_on")`` to its line number.
        known_types: When given, task types outside it are reported.

    Raises:
        PipelineSpecError: With every structural, graph and reference problem found.
    """
    lines = lines or {}
    if not isinstance(data, Mapping):
        raise PipelineSpecError(
            [
                SpecIssue(
                    path="",
                    message=f"expected a mapping with 'name' and 'tasks', got {type(data).__name__}",
                    line=1 if lines else None,
                )
            ],
            source,
        )
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise PipelineSpecError(_issues_from_validation(exc, data, lines), source) from exc
    issues = check_pipeline(spec, known_types)
    for issue in issues:
        issue.line = _line_for(issue.path, lines)
    if issues:
        raise PipelineSpecError(issues, source)
    return spec


def check_pipeline(spec: PipelineSpec, known_types: Iterable[str] | None = None) -> list[SpecIssue]:
    """Semantic checks beyond the schema: names, graph, templates, task types."""
    issues: list[SpecIssue] = []
    names: dict[str, int] = {}
    for index, task in enumerate(spec.tasks):
        if task.name in names:
            issues.append(
                SpecIssue(
                    path=f"tasks[{index}].name",
                    message=f"duplicate task name {task.name!r} (first defined at tasks[{names[task.name]}])",
                    hint="task names must be unique; rename one",
                )
            )
        else:
            names[task.name] = index
    types = set(known_types) if known_types is not None else None
    for index, task in enumerate(spec.tasks):
        where = f"tasks[{index}]"
        if types is not None and task.type not in types:
            issues.append(
                SpecIssue(
                    path=f"{where}.type",
                    message=f"unknown task type {task.type!r} in task {task.name!r}",
                    hint=_suggest(task.type, types) or f"known types: {', '.join(sorted(types))}",
                )
            )
        for dep_index, dep in enumerate(task.depends_on):
            if dep not in names:
                issues.append(
                    SpecIssue(
                        path=f"{where}.depends_on[{dep_index}]",
                        message=f"task {task.name!r} depends on unknown task {dep!r}",
                        hint=_suggest(dep, names) or f"tasks: {', '.join(names)}",
                    )
                )
            elif dep == task.name:
                issues.append(
                    SpecIssue(
                        path=f"{where}.depends_on[{dep_index}]",
                        message=f"task {task.name!r} depends on itself",
                    )
                )
    cycle = find_cycle(spec)
    if cycle:
        issues.append(
            SpecIssue(
                path=f"tasks[{names[cycle[0]]}].depends_on",
                message="dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                hint="remove one of these dependencies",
            )
        )
    ancestors = _ancestors(spec) if not cycle else {}
    for index, task in enumerate(spec.tasks):
        issues += _check_templates(
            task.params, f"tasks[{index}].params", spec, ancestors.get(task.name), task.name
        )
    issues += _check_templates(spec.outputs, "outputs", spec, set(names), None)
    return issues


def find_cycle(spec: PipelineSpec) -> list[str] | None:
    """Return one dependency cycle as a list of task names, or None."""
    deps = {task.name: [d for d in task.depends_on if d != task.name] for task in spec.tasks}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for dep in deps.get(name, []):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep) :]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in deps:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def template_reads(spec: PipelineSpec) -> dict[str, list[str]]:
    """For each task, the tasks whose outputs its param templates refer to."""
    reads: dict[str, list[str]] = {}
    for task in spec.tasks:
        names: set[str] = set()
        for _, text in iter_strings(task.params):
            if "{{" in text or "{%" in text:
                names |= {name for root, name in references(text) if root == "tasks" and name}
        reads[task.name] = sorted(names)
    return reads


def topological_order(spec: PipelineSpec) -> list[str]:
    """Task names in an order where every task follows its dependencies."""
    order: list[str] = []
    done: set[str] = set()
    pending = [task.name for task in spec.tasks]
    known = {task.name for task in spec.tasks}
    # Unknown and self dependencies are reported by check_pipeline; ignore them here.
    deps = {task.name: (set(task.depends_on) & known) - {task.name} for task in spec.tasks}
    while pending:
        ready = [name for name in pending if deps[name] <= done]
        if not ready:
            raise ValueError("the pipeline has a dependency cycle")
        for name in ready:
            order.append(name)
            done.add(name)
        pending = [name for name in pending if name not in done]
    return order


def _ancestors(spec: PipelineSpec) -> dict[str, set[str]]:
    known = {task.name for task in spec.tasks}
    deps = {task.name: (set(task.depends_on) & known) - {task.name} for task in spec.tasks}
    result: dict[str, set[str]] = {}
    for name in topological_order(spec):
        seen: set[str] = set()
        for dep in deps[name]:
            seen.add(dep)
            seen |= result.get(dep, set())
        result[name] = seen
    return result


def _check_templates(
    value: Any, base: str, spec: PipelineSpec, visible: set[str] | None, owner: str | None
) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for path, text in iter_strings(value):
        if "{{" not in text and "{%" not in text:
            continue
        where = base + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        try:
            refs = references(text)
        except TemplateError as exc:
            issues.append(SpecIssue(path=where, message=str(exc)))
            continue
        for root, name in sorted(refs, key=lambda r: (r[0], r[1] or "")):
            if root not in ROOTS:
                issues.append(
                    SpecIssue(
                        path=where,
                        message=f"template refers to unknown name {root!r}",
                        hint="use params.<name>, tasks.<task>.output or run.<field>",
                    )
                )
            elif root == "params" and name is not None and name not in spec.params:
                issues.append(
                    SpecIssue(
                        path=where,
                        message=f"template refers to undeclared param {name!r}",
                        hint=_suggest(name, spec.params) or "declare it under 'params'",
                    )
                )
            elif root == "tasks" and name is not None:
                known = {t.name for t in spec.tasks}
                if name not in known:
                    issues.append(
                        SpecIssue(
                            path=where,
                            message=f"template refers to unknown task {name!r}",
                            hint=_suggest(name, known) or f"tasks: {', '.join(sorted(known))}",
                        )
                    )
                elif visible is not None and name not in visible:
                    issues.append(
                        SpecIssue(
                            path=where,
                            message=f"task {owner!r} reads the output of {name!r}, which is not upstream of it",
                            hint=f"add {name!r} to depends_on of {owner!r}",
                        )
                    )
    return issues


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def _issues_from_validation(
    exc: ValidationError, data: Mapping[str, Any], lines: Mapping[tuple[str | int, ...], int]
) -> list[SpecIssue]:
    issues = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
        elif error["type"] == "missing":
            message = f"missing required field {loc[-1]!r}"
        path = _format_path(loc, data)
        issues.append(SpecIssue(path=path, message=message, line=_line_for_loc(loc, lines)))
    return issues


def _format_path(loc: tuple[Any, ...], data: Mapping[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            try:
                node = node[item]
                if (
                    isinstance(node, Mapping)
                    and isinstance(node.get("name"), str)
                    and parts == ["tasks"]
                ):
                    label = f"[{item}] ({node['name']})"
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        else:
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, Mapping) else None
    return "".join(parts)


_PATH_TOKEN = re.compile(r"\[(\d+)\]|\.?([A-Za-z0-9_\-]+)")


def _line_for(path: str, lines: Mapping[tuple[str | int, ...], int]) -> int | None:
    loc: list[str | int] = []
    for match in _PATH_TOKEN.finditer(path):
        loc.append(int(match.group(1)) if match.group(1) is not None else match.group(2))
    return _line_for_loc(tuple(loc), lines)


def _line_for_loc(loc: tuple[Any, ...], lines: Mapping[tuple[str | int, ...], int]) -> int | None:
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def _yaml_line_map(text: str) -> dict[tuple[str | int, ...], int]:
    """Map every key and list item path of a YAML/JSON document to its 1-based line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


# --- shared by every YAML file Mendline reads (pipelines, alert rules, policies) --------------


def yaml_issue(exc: yaml.YAMLError) -> SpecIssue:
    """The located issue of a YAML syntax error."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return SpecIssue(
        path="",
        message=f"not valid YAML: {problem}",
        line=mark.line + 1 if mark else None,
        hint=f"column {mark.column + 1}" if mark else "",
    )


def unreadable_issue(exc: OSError, what: str, hint: str) -> SpecIssue:
    """The issue of a file that cannot be read (``what``: e.g. ``the rules file``)."""
    return SpecIssue(path="", message=f"cannot read {what}: {exc.strerror or exc}", hint=hint)


line_map = _yaml_line_map
"""Public name of the YAML line map (path → line) used to locate issues."""
line_for_loc = _line_for_loc
"""Public name of the lookup of a validation location's line in a :data:`line_map`."""
