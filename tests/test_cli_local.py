"""The ``mendline`` commands that need no Temporal server, through Typer's test runner.

Every test points MENDLINE_TEMPORAL_ADDRESS at a closed port, so a command that tried to
reach Temporal would fail with "cannot reach Temporal" rather than pass by accident.
"""

from __future__ import annotations

import csv
import io
import json
import os
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner, Result

from activities.storage import Database
from models.db import TaskAttemptRow
from models.runs import ErrorInfo, PipelineRunState, RunStatus, TaskState, TaskStatus
from workers.cli.main import app

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples" / "pipelines").glob("*.yaml"))
CLOSED = "127.0.0.1:1"
BUILTIN_TYPES = ["fail", "http", "load", "noop", "python", "sleep", "sql", "transform", "validate"]

ORDERS = textwrap.dedent(
    """\
    name: orders
    params:
      day: {required: true}
      limit: 10
    tasks:
      - name: extract
        type: http
        params: {url: "http://127.0.0.1:9/orders?day={{ params.day }}"}
      - name: clean
        type: transform
        depends_on: [extract]
        params: {records: "{{ tasks.extract.output.json }}"}
    """
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """A clean MENDLINE_* configuration: a fresh SQLite database and an unreachable Temporal."""
    for name in list(os.environ):
        if name.startswith("MENDLINE_"):
            monkeypatch.delenv(name)
    values = {
        "MENDLINE_DATA_DIR": str(tmp_path / "data"),
        "MENDLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'mendline.db'}",
        "MENDLINE_TEMPORAL_ADDRESS": CLOSED,
        "MENDLINE_LOG_LEVEL": "WARNING",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # Wide enough that rich never wraps or truncates a table cell we assert on.
    monkeypatch.setenv("COLUMNS", "250")
    return values


def mendline(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def assert_clean_exit(result: Result, code: int) -> None:
    """The command ended with ``code`` through SystemExit, not an uncaught exception."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output


def table_rows(output: str) -> list[list[str]]:
    """The body cells of the rich table in ``output``, row by row."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- validate ----------------------------------------------------------------------------------


def test_validate_accepts_a_good_file(env: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path / "orders.yaml", ORDERS)
    result = mendline("validate", str(path))
    assert_clean_exit(result, 0)
    assert result.stdout.strip() == (
        f"ok {path}: pipeline 'orders' v1, 2 tasks, params ['day', 'limit']"
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_bundled_example_validates(env: dict[str, str], example: Path) -> None:
    result = mendline("validate", str(example))
    assert_clean_exit(result, 0)
    assert result.stdout.startswith(f"ok {example}: pipeline ")


BAD_FILES = {
    "unknown-field.yaml": (
        "name: x\ntasks:\n  - name: a\n    type: noop\n    colour: red\n",
        ":5: tasks[0] (a).colour: unknown field 'colour'",
    ),
    "unknown-type.yaml": (
        "name: x\ntasks:\n  - name: a\n    type: htp\n",
        ":4: tasks[0].type: unknown task type 'htp' in task 'a' (did you mean 'http'?)",
    ),
    "cycle.yaml": (
        "name: x\ntasks:\n  - name: a\n    type: noop\n    depends_on: b\n"
        "  - name: b\n    type: noop\n    depends_on: a\n",
        ":5: tasks[0].depends_on: dependency cycle: a -> b -> a",
    ),
    "broken.yaml": (
        "name: x\ntasks:\n  - name: a\n    type: noop\n    params: {a: [1, 2}\n",
        ":5: not valid YAML: expected ',' or ']', but got '}' (column 22)",
    ),
    "broken.json": ('{"name": "x",\n "tasks": [\n }', ":3: not valid JSON: Expecting value"),
    "params.yaml": (
        "name: x\nparams: {day: 1}\ntasks:\n  - name: a\n    type: noop\n"
        "    params: {d: '{{ params.dya }}'}\n",
        ":6: tasks[0].params.d: template refers to undeclared param 'dya' (did you mean 'day'?)",
    ),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_validate_names_the_file_line_and_problem(
    env: dict[str, str], tmp_path: Path, name: str
) -> None:
    text, problem = BAD_FILES[name]
    path = write(tmp_path / name, text)
    result = mendline("validate", str(path))
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert result.stderr.startswith("error: invalid pipeline (1 problem):\n")
    assert f"{path}{problem}" in result.stderr


def test_validate_reports_several_problems_at_once(env: dict[str, str], tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        "name: x\ntasks:\n  - name: a\n    type: htp\n  - name: b\n    type: noop\n"
        "    depends_on: [zz]\n",
    )
    result = mendline("validate", str(path))
    assert_clean_exit(result, 2)
    assert "invalid pipeline (2 problems)" in result.stderr
    assert f"{path}:4: tasks[0].type" in result.stderr
    assert f"{path}:7: tasks[1].depends_on[0]" in result.stderr


def test_validate_of_a_missing_file_says_so(env: dict[str, str], tmp_path: Path) -> None:
    result = mendline("validate", str(tmp_path / "nope.yaml"))
    assert_clean_exit(result, 2)
    assert result.stderr == f"error: pipeline file {tmp_path / 'nope.yaml'} not found\n"


def test_validate_reports_a_self_dependency(env: dict[str, str], tmp_path: Path) -> None:
    path = write(
        tmp_path / "self.yaml", "name: x\ntasks:\n  - name: a\n    type: noop\n    depends_on: a\n"
    )
    result = mendline("validate", str(path))
    assert_clean_exit(result, 2)
    assert f"{path}:5: tasks[0].depends_on[0]: task 'a' depends on itself" in result.stderr


@pytest.mark.parametrize("folder", ["[draft]", "old[/]"])
def test_paths_with_brackets_are_printed_as_they_are(
    env: dict[str, str], tmp_path: Path, folder: str
) -> None:
    good = write(tmp_path / folder / "ok.yaml", ORDERS)
    bad = write(tmp_path / folder / "bad.yaml", BAD_FILES["unknown-field.yaml"][0])
    ok = mendline("validate", str(good))
    assert_clean_exit(ok, 0)
    assert str(good) in ok.stdout
    failed = mendline("validate", str(bad))
    assert_clean_exit(failed, 2)
    assert f"{bad}:5:" in failed.stderr


# --- run: everything that fails before Temporal is contacted -----------------------------------


def test_run_refuses_a_bad_file_before_contacting_temporal(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write(tmp_path / "bad.yaml", BAD_FILES["unknown-type.yaml"][0])
    result = mendline("run", str(path), "--wait")
    assert_clean_exit(result, 2)
    assert f"{path}:4: tasks[0].type: unknown task type 'htp'" in result.stderr
    assert "cannot reach Temporal" not in result.output


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["day"], "--param 'day' is not of the form key=value (e.g. --param day=2026-11-20)"),
        (["=2026-11-20"], "--param '=2026-11-20' has an empty key"),
        (
            ["day=2026-11-20", "limt=5"],
            "params.limt: unknown param 'limt' (did you mean 'limit'?)",
        ),
        ([], "params.day: required param 'day' was not given (pass it, e.g. --param day=VALUE)"),
    ],
)
def test_run_refuses_bad_params_before_contacting_temporal(
    env: dict[str, str], tmp_path: Path, params: list[str], message: str
) -> None:
    path = write(tmp_path / "orders.yaml", ORDERS)
    result = mendline("run", str(path), *[arg for p in params for arg in ("--param", p)])
    assert_clean_exit(result, 2)
    assert message in result.stderr
    assert "cannot reach Temporal" not in result.output


def test_run_against_an_unreachable_external_server_says_what_to_check(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write(tmp_path / "orders.yaml", ORDERS)
    result = mendline("run", str(path), "--param", "day=2026-11-20")
    assert_clean_exit(result, 1)
    assert result.stderr.startswith(f"error: cannot reach Temporal at {CLOSED}: ")
    assert "check MENDLINE_TEMPORAL_ADDRESS and that the cluster is up" in result.stderr


def test_run_without_a_server_says_how_to_start_one(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No external address: the CLI expects the embedded server, here on a closed port.
    monkeypatch.delenv("MENDLINE_TEMPORAL_ADDRESS")
    monkeypatch.setenv("MENDLINE_EMBEDDED_PORT", "1")
    path = write(tmp_path / "orders.yaml", ORDERS)
    result = mendline("run", str(path), "--param", "day=2026-11-20", "--wait")
    assert_clean_exit(result, 1)
    assert result.stderr.startswith("error: cannot reach Temporal at 127.0.0.1:1: ")
    assert "start the embedded server with `mendline server` (or `mendline up`)" in result.stderr


# --- runs and telemetry from the database ------------------------------------------------------

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def _state(
    run_id: str, pipeline: str, status: RunStatus, started: datetime, **kw: Any
) -> PipelineRunState:
    return PipelineRunState(
        run_id=run_id,
        pipeline=pipeline,
        status=status,
        started_at=started,
        ended_at=started + timedelta(seconds=2.5),
        **kw,
    )


def _attempt(
    run_id: str, pipeline: str, task: str, n: int, status: str, ms: float, **kw: Any
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "pipeline": pipeline,
        "task": task,
        "task_type": "noop",
        "attempt": n,
        "status": status,
        "started_at": T0 + timedelta(seconds=n),
        "ended_at": T0 + timedelta(seconds=n, milliseconds=ms),
        "duration_ms": ms,
        **kw,
    }


@pytest.fixture
def populated(env: dict[str, str]) -> Iterator[Database]:
    """Three recorded runs of two pipelines and their task attempts."""
    db = Database(env["MENDLINE_DATABASE_URL"])
    done = {"extract": TaskState(name="extract", type="http", status=TaskStatus.SUCCEEDED)}
    db.record_run(
        _state(
            "orders-1",
            "orders",
            RunStatus.SUCCEEDED,
            T0 - timedelta(days=1),
            tasks=done,
            outputs={"rows": 3},
        ),
        "pipeline/orders/1",
        "",
    )
    db.record_run(
        _state(
            "orders-2",
            "orders",
            RunStatus.FAILED,
            T0,
            error=ErrorInfo(type="HttpStatusError", message="GET /orders: 503"),
        ),
        "pipeline/orders/2",
        "",
    )
    db.record_run(
        _state("fanout-1", "fanout", RunStatus.SUCCEEDED, T0 + timedelta(hours=1)),
        "pipeline/fanout/1",
        "",
    )
    db.record_attempt(**_attempt("orders-1", "orders", "extract", 1, "SUCCEEDED", 100.0))
    db.record_attempt(
        **_attempt("orders-1", "orders", "clean", 1, "SUCCEEDED", 10.0, records_in=4, records_out=3)
    )
    db.record_attempt(
        **_attempt(
            "orders-2",
            "orders",
            "extract",
            1,
            "FAILED",
            50.0,
            error_type="HttpStatusError",
            error_message="GET /orders: 503",
        )
    )
    db.record_attempt(**_attempt("orders-2", "orders", "extract", 2, "SUCCEEDED", 300.0))
    db.record_attempt(**_attempt("fanout-1", "fanout", "a", 1, "SUCCEEDED", 5.0, cached=True))
    yield db
    db.dispose()


def test_runs_list_shows_newest_first(populated: Database) -> None:
    result = mendline("runs", "list")
    assert_clean_exit(result, 0)
    rows = table_rows(result.stdout)
    assert [row[:3] for row in rows] == [
        ["fanout-1", "fanout", "SUCCEEDED"],
        ["orders-2", "orders", "FAILED"],
        ["orders-1", "orders", "SUCCEEDED"],
    ]
    assert rows[1][3:] == ["2026-11-20 08:00:00", "2.50s", "", "GET /orders: 503"]
    assert rows[2][5] == "succeeded=1"


def test_runs_list_filters_and_prints_json(populated: Database) -> None:
    result = mendline("runs", "list", "--pipeline", "orders", "--status", "failed", "--json")
    assert_clean_exit(result, 0)
    (run,) = json.loads(result.stdout)
    assert (run["run_id"], run["workflow_id"], run["status"]) == (
        "orders-2",
        "pipeline/orders/2",
        "FAILED",
    )
    assert run["error_type"] == "HttpStatusError"
    newest = json.loads(mendline("runs", "list", "--limit", "1", "--json").stdout)
    assert [r["run_id"] for r in newest] == ["fanout-1"]


def test_runs_list_on_an_empty_database_says_how_to_start(env: dict[str, str]) -> None:
    result = mendline("runs", "list")
    assert_clean_exit(result, 0)
    assert "no runs recorded yet — start one with `mendline run FILE --wait`" in result.stdout


def test_runs_show_lists_attempts_with_percentiles(populated: Database) -> None:
    result = mendline("runs", "show", "orders-2")
    assert_clean_exit(result, 0)
    out = result.stdout
    assert out.splitlines()[0] == "orders run orders-2: FAILED"
    assert "error HttpStatusError: GET /orders: 503" in out
    # extract succeeded in 100 ms (orders-1) and 300 ms (orders-2): p50 200, p95 290.
    assert "200.0ms" in out
    assert "290.0ms" in out


def test_runs_show_json(populated: Database) -> None:
    result = mendline("runs", "show", "orders-1", "--json")
    assert_clean_exit(result, 0)
    shown = json.loads(result.stdout)
    assert shown["run"]["run_id"] == "orders-1"
    assert shown["run"]["outputs"] == {"rows": 3}
    assert [(a["task"], a["attempt"], a["status"]) for a in shown["attempts"]] == [
        ("extract", 1, "SUCCEEDED"),
        ("clean", 1, "SUCCEEDED"),
    ]
    assert shown["task_percentiles_ms"] == {
        "extract": {"p50": 200.0, "p95": pytest.approx(290.0), "n": 2},
        "clean": {"p50": 10.0, "p95": 10.0, "n": 1},
    }


def test_runs_show_of_an_unknown_run_says_how_to_find_one(
    populated: Database, env: dict[str, str]
) -> None:
    result = mendline("runs", "show", "nope")
    assert_clean_exit(result, 1)
    assert result.stderr == (
        f"error: no run 'nope' in {env['MENDLINE_DATABASE_URL']}; "
        "list runs with `mendline runs list`\n"
    )


def test_telemetry_export_csv(populated: Database) -> None:
    result = mendline("telemetry", "export", "--format", "csv")
    assert_clean_exit(result, 0)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [c.name for c in TaskAttemptRow.__table__.columns]
    assert [(r["run_id"], r["task"], r["attempt"], r["status"]) for r in rows] == [
        ("orders-1", "extract", "1", "SUCCEEDED"),
        ("orders-1", "clean", "1", "SUCCEEDED"),
        ("orders-2", "extract", "1", "FAILED"),
        ("orders-2", "extract", "2", "SUCCEEDED"),
        ("fanout-1", "a", "1", "SUCCEEDED"),
    ]
    assert rows[2]["error_message"] == "GET /orders: 503"


def test_telemetry_export_jsonl_for_one_pipeline_to_a_file(
    populated: Database, tmp_path: Path
) -> None:
    out = tmp_path / "attempts.jsonl"
    result = mendline(
        "telemetry", "export", "--format", "jsonl", "--pipeline", "fanout", "--out", str(out)
    )
    assert_clean_exit(result, 0)
    assert f"wrote 1 attempts to {out}" in result.stdout
    (line,) = out.read_text(encoding="utf-8").splitlines()
    attempt = json.loads(line)
    assert (attempt["run_id"], attempt["task"], attempt["cached"], attempt["duration_ms"]) == (
        "fanout-1",
        "a",
        True,
        5.0,
    )


def test_telemetry_export_refuses_an_unknown_format(env: dict[str, str]) -> None:
    result = mendline("telemetry", "export", "--format", "xml")
    assert_clean_exit(result, 2)
    assert "--format must be csv or jsonl, got 'xml'" in result.stderr


# --- db, tasks, help ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_env(
    request: pytest.FixtureRequest, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> str:
    """MENDLINE_DATABASE_URL of an empty SQLite or PostgreSQL database."""
    if request.param == "postgresql":
        monkeypatch.setenv("MENDLINE_DATABASE_URL", request.getfixturevalue("postgres_url"))
    return os.environ["MENDLINE_DATABASE_URL"]


def test_db_upgrade_and_current(db_env: str) -> None:
    shown = db_env.replace("postgresql://", "postgresql+psycopg://")
    before = mendline("db", "current")
    assert_clean_exit(before, 0)
    assert before.stdout.strip() == f"{shown}: revision none (empty)"
    for _ in range(2):  # upgrading an up-to-date database is a no-op
        upgraded = mendline("db", "upgrade")
        assert_clean_exit(upgraded, 0)
        assert upgraded.stdout.strip() == f"database {shown} at revision {HEAD_REVISION}"
    after = mendline("db", "current")
    assert after.stdout.strip() == f"{shown}: revision {HEAD_REVISION}"


def test_tasks_lists_the_builtin_types(env: dict[str, str]) -> None:
    result = mendline("tasks")
    assert_clean_exit(result, 0)
    listed = {row[0]: row[1] for row in table_rows(result.stdout)}
    assert set(BUILTIN_TYPES) <= set(listed)
    assert (listed["noop"], listed["http"]) == ("local", "activity")


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from activities.storage import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


HEAD_REVISION = _head_revision()


COMMANDS = [
    (),
    ("server",),
    ("worker",),
    ("up",),
    ("down",),
    ("tasks",),
    ("validate",),
    ("run",),
    ("state",),
    ("cancel",),
    ("runs",),
    ("runs", "list"),
    ("runs", "show"),
    ("telemetry",),
    ("telemetry", "export"),
    ("db",),
    ("db", "upgrade"),
    ("db", "current"),
    ("demo",),
    ("demo", "serve"),
    ("scout",),
    ("extract",),
    ("source",),
    ("source", "add"),
    ("source", "run"),
    ("source", "list"),
    ("source", "show"),
    ("source", "records"),
    ("source", "export"),
    ("source", "remove"),
    ("approvals",),
    ("approvals", "list"),
    ("approvals", "show"),
    ("approvals", "approve"),
    ("approvals", "reject"),
    ("source", "status"),
    ("source", "fix"),
    ("source", "pause"),
    ("source", "resume"),
    ("source", "reset"),
    ("source", "mark-dead"),
    ("source", "interval"),
    ("source", "supervise"),
    ("source", "history"),
    ("alerts",),
    ("alerts", "list"),
    ("alerts", "test"),
    ("incidents",),
    ("incidents", "list"),
    ("incidents", "show"),
    ("incidents", "resolve"),
    ("monitor",),
    ("monitor", "enable"),
    ("monitor", "disable"),
    ("monitor", "status"),
    ("monitor", "run"),
    ("report",),
    ("model",),
    ("model", "train"),
    ("model", "list"),
    ("model", "show"),
    ("model", "default"),
    ("audit",),
    ("audit", "verify"),
    ("audit", "export"),
]


def test_every_command_is_covered_by_the_help_test() -> None:
    def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    assert sorted(walk(typer.main.get_command(app))) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mendline")
def test_help_of_every_command(env: dict[str, str], command: tuple[str, ...]) -> None:
    result = mendline(*command, "--help")
    assert_clean_exit(result, 0)
    assert "Usage:" in result.stdout
    assert "cannot reach Temporal" not in result.output
