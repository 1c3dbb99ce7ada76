"""The bundled demo API and the example pipelines that run against it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from temporalio.client import Client, WorkflowFailureError

from activities.tasks import default_registry
from models.pipeline import PipelineSpec, load_pipeline_text
from models.runs import PipelineRunInput, PipelineRunState, RunStatus, TaskStatus
from models.settings import Settings
from models.templates import render_value
from workers.demo_server import DEFAULT_PORT, WAREHOUSES, DemoServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pipelines"


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    with DemoServer().start() as server:
        yield server


@pytest.fixture(scope="module")
def api(demo: DemoServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        yield http


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- orders -------------------------------------------------------------------------------


def test_orders_are_the_same_for_the_same_day(api: httpx.Client) -> None:
    first = api.get("/orders", params={"day": "2026-11-20"})
    second = api.get("/orders", params={"day": "2026-11-20"})
    other = api.get("/orders", params={"day": "2026-11-21"})

    assert first.status_code == 200
    assert first.json() == second.json()
    assert first.json()["day"] == "2026-11-20"
    assert first.json()["orders"] != other.json()["orders"]


def test_orders_are_the_same_across_server_restarts(api: httpx.Client) -> None:
    # A re-run of a pipeline against a restarted demo server must see the same data.
    with DemoServer().start() as fresh:
        again = httpx.get(f"{fresh.url}/orders", params={"day": "2026-11-20"}).json()
    assert again == api.get("/orders", params={"day": "2026-11-20"}).json()


def test_orders_have_the_documented_shape(api: httpx.Client) -> None:
    for day in ("2026-01-01", "2026-11-20", "2027-02-28"):
        orders = api.get("/orders", params={"day": day}).json()["orders"]
        assert 20 <= len(orders) <= 41
        for order in orders:
            assert set(order) >= {
                "order_id",
                "customer",
                "email",
                "amount",
                "currency",
                "status",
                "created_at",
            }
            assert order["order_id"].startswith("ORD-" + day.replace("-", ""))
            assert order["created_at"].startswith(day)
            assert isinstance(order["amount"], float)


def test_orders_contain_rows_a_pipeline_must_clean(api: httpx.Client) -> None:
    orders = api.get("/orders", params={"day": "2026-11-20"}).json()["orders"]

    refunds = [o for o in orders if o["status"] == "refunded"]
    assert refunds and all(o["amount"] <= 0 for o in refunds)
    assert any(o["email"] is None for o in orders)
    assert any(o["email"] and o["email"] != o["email"].lower() for o in orders)
    clean = [o for o in orders if o["status"] == "paid" and o["amount"] > 0 and o["email"]]
    assert len(clean) >= 10


def test_some_days_repeat_an_order(api: httpx.Client) -> None:
    def has_duplicate(day: str) -> bool:
        ids = [o["order_id"] for o in api.get("/orders", params={"day": day}).json()["orders"]]
        return len(ids) != len(set(ids))

    repeats = [has_duplicate(f"2026-11-{day:02d}") for day in range(1, 15)]

    assert any(repeats) and not all(repeats)


@pytest.mark.parametrize("day", ["2026-13-01", "2026-02-30", "20261120", "yesterday", ""])
def test_orders_reject_a_bad_day_with_400(api: httpx.Client, day: str) -> None:
    response = api.get("/orders", params={"day": day})

    assert response.status_code == 400
    assert "YYYY-MM-DD" in response.json()["error"] or "missing" in response.json()["error"]


# --- reference data -----------------------------------------------------------------------


def test_customers_products_and_inventory(api: httpx.Client) -> None:
    customers = api.get("/customers").json()
    products = api.get("/products").json()
    skus = {p["sku"] for p in products}

    assert len({c["customer_id"] for c in customers}) == len(customers) >= 10
    assert all(p["price"] > 0 for p in products)
    for warehouse in WAREHOUSES:
        body = api.get("/inventory", params={"warehouse": warehouse}).json()
        assert body["warehouse"] == warehouse
        assert body["stock"] and {item["sku"] for item in body["stock"]} <= skus
    unknown = api.get("/inventory", params={"warehouse": "nowhere"})
    assert unknown.status_code == 404
    assert "ams" in unknown.json()["error"]


# --- misbehaving endpoints ----------------------------------------------------------------


def test_flaky_fails_exactly_n_times_per_key(api: httpx.Client) -> None:
    key, other = f"k-{uuid.uuid4()}", f"k-{uuid.uuid4()}"

    statuses = [api.get("/flaky", params={"key": key, "fail": 2}).status_code for _ in range(4)]
    first_of_other = api.get("/flaky", params={"key": other, "fail": 2})

    assert statuses == [503, 503, 200, 200]
    assert api.get("/flaky", params={"key": key, "fail": 2}).json() == {
        "ok": True,
        "key": key,
        "attempts": 5,
    }
    assert first_of_other.status_code == 503


async def test_flaky_counts_exactly_under_20_parallel_requests(demo: DemoServer) -> None:
    key = f"k-{uuid.uuid4()}"

    async with httpx.AsyncClient(base_url=demo.url, timeout=10) as http:
        calls = [http.get("/flaky", params={"key": key, "fail": 5}) for _ in range(20)]
        responses = await asyncio.gather(*calls)

    assert sorted(r.status_code for r in responses) == [200] * 15 + [503] * 5
    assert sorted(r.json()["attempts"] for r in responses) == list(range(1, 21))


def test_reset_forgets_flaky_keys(demo: DemoServer, api: httpx.Client) -> None:
    key = f"k-{uuid.uuid4()}"
    assert api.get("/flaky", params={"key": key, "fail": 1}).status_code == 503
    assert api.get("/flaky", params={"key": key, "fail": 1}).status_code == 200

    demo.reset()

    assert api.get("/flaky", params={"key": key, "fail": 1}).status_code == 503


async def test_slow_requests_are_served_in_parallel(demo: DemoServer) -> None:
    async with httpx.AsyncClient(base_url=demo.url, timeout=10) as http:
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(http.get("/slow", params={"seconds": 0.5}) for _ in range(4))
        )
        elapsed = time.perf_counter() - started

    assert [r.json()["slept"] for r in responses] == [0.5] * 4
    assert 0.5 <= elapsed < 1.5


@pytest.mark.parametrize("code", [201, 204, 404, 418, 429, 500, 503])
def test_status_answers_the_requested_code(api: httpx.Client, code: int) -> None:
    response = api.get(f"/status/{code}")

    assert response.status_code == code
    if code == 204:
        assert response.content == b""
    else:
        assert response.json() == {"status": code}


def test_bad_requests_say_what_to_do(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    assert api.get("/status/42").status_code == 400
    assert api.get("/slow", params={"seconds": "forever"}).status_code == 400
    assert api.get("/flaky", params={"key": "x", "fail": -1}).status_code == 400
    missing = api.get("/nope")
    assert missing.status_code == 404
    assert "/orders" in missing.json()["error"]
    assert api.post("/orders").status_code == 405


# --- lifecycle ----------------------------------------------------------------------------


def test_stop_frees_the_port() -> None:
    server = DemoServer().start()
    url = server.url
    assert httpx.get(f"{url}/health").status_code == 200

    server.stop()

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_module_runs_in_the_foreground_until_stopped(stop: signal.Signals) -> None:
    port = _free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "workers.demo_server", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "demo server did not start within 10s"
                    time.sleep(0.05)
            assert health.status_code == 200
        finally:
            process.send_signal(stop)
            _, stderr = process.communicate(timeout=10)

    assert process.returncode == 0
    assert f"http://127.0.0.1:{port}" in stderr
    assert "GET /health" in stderr
    assert "demo server stopped" in stderr


@pytest.mark.slow
def test_module_reports_a_taken_port() -> None:
    with DemoServer().start() as taken:
        port = taken.url.rsplit(":", 1)[1]
        result = subprocess.run(
            [sys.executable, "-m", "workers.demo_server", "--port", port],
            capture_output=True,
            text=True,
            timeout=20,
        )

    assert result.returncode == 1
    assert "--port" in result.stderr


# --- example pipelines --------------------------------------------------------------------


def _examples() -> list[Path]:
    """The examples that call the demo API (scrape pipelines need an onboarded source and are
    run in tests/test_sources.py)."""
    return sorted(p for p in EXAMPLES.glob("*.yaml") if "type: scrape" not in p.read_text())


def _load(path: Path) -> PipelineSpec:
    known_types = default_registry(load_entry_points=False).names()
    return load_pipeline_text(path.read_text(), source=str(path), known_types=known_types)


def test_the_documented_examples_exist() -> None:
    assert {p.stem for p in _examples()} >= {"orders", "fanout", "flaky", "broken"}


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_example_is_a_valid_pipeline_for_the_demo_server(path: Path) -> None:
    spec = _load(path)  # raises on any problem, unknown task types included

    if any(task.type in ("http", "scrape") for task in spec.tasks):
        assert spec.params["api"].default == f"http://127.0.0.1:{DEFAULT_PORT}"
    spec.resolve_params({})  # runs without any --param (raises otherwise)
    assert spec.description


def _request(http: httpx.Client, params: dict[str, Any]) -> httpx.Response:
    return http.request(
        params.get("method", "GET"),
        params["url"],
        params=params.get("query"),
        headers=params.get("headers"),
    )


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_example_http_tasks_succeed_against_the_demo_server(
    path: Path, demo: DemoServer, api: httpx.Client
) -> None:
    spec = _load(path)
    context = {
        "params": spec.resolve_params({"api": demo.url} if "api" in spec.params else {}),
        "tasks": {},
        "run": {"id": f"test-{uuid.uuid4()}"},
    }

    for task in (t for t in spec.tasks if t.type == "http"):
        params = render_value(task.params, context)
        # Retry 503s as the task's policy would; the flaky example needs its retries.
        statuses: list[int] = []
        while len(statuses) < task.retry.max_attempts and 200 not in statuses:
            statuses.append(_request(api, params).status_code)
        assert statuses[-1] == 200, f"{path.name}: task {task.name!r} got {statuses}"
        assert set(statuses[:-1]) <= {503}


def test_broken_example_asks_for_more_rows_than_the_server_ever_serves(
    api: httpx.Client,
) -> None:
    spec = _load(EXAMPLES / "broken.yaml")
    rules = spec.task("check").params["rules"]
    wanted = next(rule["row_count"]["min"] for rule in rules if "row_count" in rule)

    most = max(
        len(api.get("/orders", params={"day": f"2026-01-{day:02d}"}).json()["orders"])
        for day in range(1, 32)
    )

    assert wanted > most


# --- the examples, run end to end by a real worker ----------------------------------------


async def _run_example(
    client: Client, settings: Settings, workflow_id: str, name: str, params: dict[str, Any]
) -> PipelineRunState:
    # Sent inline, as `mendline run` does.
    spec = _load(EXAMPLES / f"{name}.yaml").model_dump(mode="json", exclude_defaults=True)
    handle = await client.start_workflow(
        "PipelineRun",
        PipelineRunInput(pipeline=spec, params=params),
        id=workflow_id,
        task_queue=settings.task_queue,
        result_type=PipelineRunState,
    )
    try:
        state: PipelineRunState = await handle.result()
    except WorkflowFailureError:
        state = await handle.query("state", result_type=PipelineRunState)
    return state


def _loaded_records(settings: Settings, table: str) -> list[dict[str, Any]]:
    """The records a ``load`` task stored (each row keeps the whole record in ``data``)."""
    engine = sqlalchemy.create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            result = conn.execute(sqlalchemy.text(f"SELECT data FROM {table}"))
            return [json.loads(data) if isinstance(data, str) else data for (data,) in result]
    finally:
        engine.dispose()


@pytest.mark.slow
async def test_orders_example_loads_exactly_the_clean_orders(
    client: Client,
    worker: Any,
    settings: Settings,
    workflow_id: str,
    demo: DemoServer,
    api: httpx.Client,
) -> None:
    day = "2026-11-20"
    raw = api.get("/orders", params={"day": day}).json()["orders"]
    clean = {
        o["order_id"]: round(o["amount"] * o["fx_rate"], 2)
        for o in raw
        if o["status"] == "paid" and o["amount"] > 0 and o["email"] is not None
    }
    params = {"day": day, "api": demo.url}

    first = await _run_example(client, settings, workflow_id, "orders", params)
    again = await _run_example(client, settings, f"{workflow_id}-again", "orders", params)

    assert first.status == RunStatus.SUCCEEDED, first.error
    assert first.outputs == {"day": day, "extracted": len(raw), "loaded": len(clean)}
    rows = _loaded_records(settings, "orders")
    assert {r["order_id"]: r["amount_eur"] for r in rows} == clean
    assert all(r["email"] == r["email"].lower() for r in rows)
    # The second run reads the API response from the cache and updates, not duplicates.
    assert again.status == RunStatus.SUCCEEDED, again.error
    assert again.tasks["extract"].cached
    assert len(_loaded_records(settings, "orders")) == len(clean)


@pytest.mark.slow
async def test_fanout_example_joins_every_branch(
    client: Client,
    worker: Any,
    settings: Settings,
    workflow_id: str,
    demo: DemoServer,
    api: httpx.Client,
) -> None:
    def in_stock(warehouse: str) -> int:
        stock = api.get("/inventory", params={"warehouse": warehouse}).json()["stock"]
        return sum(item["on_hand"] > item["reserved"] for item in stock)

    state = await _run_example(client, settings, workflow_id, "fanout", {"api": demo.url})

    assert state.status == RunStatus.SUCCEEDED, state.error
    assert state.outputs["customers"] == sum(
        c["tier"] != "basic" for c in api.get("/customers").json()
    )
    assert state.outputs["products"] == len(api.get("/products").json())
    assert state.outputs["skus_in_stock_ams"] == in_stock("ams")
    assert state.outputs["skus_in_stock_ber"] == in_stock("ber")
    join = state.tasks["join"]
    assert join.started_at is not None
    assert all(
        t.ended_at is not None and t.ended_at <= join.started_at
        for name, t in state.tasks.items()
        if name != "join"
    )


@pytest.mark.slow
async def test_flaky_example_heals_by_retrying(
    client: Client, worker: Any, settings: Settings, workflow_id: str, demo: DemoServer
) -> None:
    state = await _run_example(client, settings, workflow_id, "flaky", {"api": demo.url})

    assert state.status == RunStatus.SUCCEEDED, state.error
    assert state.tasks["call_flaky"].attempts == 3
    assert state.tasks["eventually"].attempts == 3
    assert state.outputs == {"flaky_attempts": 3}


@pytest.mark.slow
async def test_broken_example_fails_once_and_for_good(
    client: Client, worker: Any, settings: Settings, workflow_id: str, demo: DemoServer
) -> None:
    state = await _run_example(client, settings, workflow_id, "broken", {"api": demo.url})

    assert state.status == RunStatus.FAILED
    check = state.tasks["check"]
    assert check.status == TaskStatus.FAILED
    assert check.attempts == 1
    assert check.error is not None and check.error.type == "DataValidationError"
    assert "row_count" in check.error.message
    assert state.tasks["load"].status == TaskStatus.UPSTREAM_FAILED
    assert state.error is not None
    assert "'check'" in state.error.message and "row_count" in state.error.message
