"""The README's source and approval commands, as subprocesses: `mendline scout/extract/source/
approvals` and the `temporal` CLI, against the real server, a real worker and the demo sites."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.settings import Settings
from tests.support.cli import MENDLINE, cli_env, sh
from workers.demo_server import DemoServer
from workers.server import temporal_binary
from workers.worker import MendlineWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def site() -> Iterator[str]:
    with DemoServer().start() as server:
        yield server.url


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return cli_env(settings)


async def test_scout_then_extract_with_the_written_spec(
    env: dict[str, str], site: str, tmp_path: Path
) -> None:
    spec = tmp_path / "books.json"
    scouted = await sh(
        *MENDLINE, "scout", f"{site}/sites/books/", "--out", str(spec), "--json", env=env
    )
    assert scouted.returncode == 0, scouted.stderr
    report = json.loads(scouted.stdout)
    assert report["record_count"] == 24 and report["rendered"] is False
    assert {"title", "price"} <= {f["name"] for f in report["blueprint"]["fields"]}

    extracted = await sh(*MENDLINE, "extract", "--spec", str(spec), f"{site}/sites/books/", env=env)
    assert extracted.returncode == 0, extracted.stderr
    rows = [json.loads(line) for line in extracted.stdout.splitlines()]
    assert len(rows) == 24 and all(row["_url"] == f"{site}/sites/books/" for row in rows)

    missing = await sh(
        *MENDLINE, "scout", f"{site}/sites/books/", "-e", "title=No Such Book", env=env
    )
    assert missing.returncode == 1
    assert "No Such Book" in missing.stderr and "title" in missing.stderr


async def test_source_lifecycle_from_the_cli(
    worker: MendlineWorker, env: dict[str, str], site: str, tmp_path: Path
) -> None:
    name = f"b{uuid.uuid4().hex[:6]}"
    added = await sh(*MENDLINE, "source", "add", name, f"{site}/sites/books/", "--wait", env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "active" in added.stdout

    again = await sh(*MENDLINE, "source", "add", name, f"{site}/sites/books/", "--wait", env=env)
    assert again.returncode != 0
    assert "already" in (again.stdout + again.stderr).lower()

    ran = await sh(*MENDLINE, "source", "run", name, "--wait", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "24 records" in ran.stdout

    records = await sh(*MENDLINE, "source", "records", name, "--format", "jsonl", env=env)
    rows = [json.loads(line) for line in records.stdout.splitlines()]
    assert len(rows) == 24 and all("title" in row for row in rows)

    listed = json.loads((await sh(*MENDLINE, "source", "list", "--json", env=env)).stdout)
    assert any(s["name"] == name and s["status"] == "ACTIVE" for s in listed)
    shown = json.loads((await sh(*MENDLINE, "source", "show", name, "--json", env=env)).stdout)
    assert shown["active"]["version"] == 1 and shown["last_run"]["records"] == 24

    exported = await sh(*MENDLINE, "source", "export", name, "--out", str(tmp_path), env=env)
    assert exported.returncode == 0, exported.stderr
    module = tmp_path / f"{name}_v1.py"
    standalone = await sh(sys.executable, str(module), f"{site}/sites/books/", env=env)
    assert standalone.returncode == 0, standalone.stderr
    assert len(standalone.stdout.splitlines()) == 24

    removed = await sh(*MENDLINE, "source", "remove", name, env=env)
    assert removed.returncode == 0
    unknown = await sh(*MENDLINE, "source", "show", "no-such-source", env=env)
    assert unknown.returncode == 1 and "no-such-source" in unknown.stderr


async def test_approval_through_mendline_and_temporal_cli(
    worker: MendlineWorker, settings: Settings, env: dict[str, str], site: str
) -> None:
    name = f"a{uuid.uuid4().hex[:6]}"
    started = await sh(
        *MENDLINE, "source", "add", name, f"{site}/sites/books/", "--require-approval", env=env
    )
    assert started.returncode == 0, started.stderr
    wid = f"source/{name}/onboard"
    request_id = ""
    for _ in range(60):
        listed = await sh(*MENDLINE, "approvals", "list", "--json", env=env)
        pending = [
            s["pending"] for s in json.loads(listed.stdout or "[]") if s["workflow_id"] == wid
        ]
        if pending:
            request_id = pending[0]["request_id"]
            break
        await asyncio.sleep(0.5)
    assert request_id.startswith(wid + "#")

    # A malformed approval through the Temporal CLI is refused by the validator.
    address = ["--address", settings.resolved_temporal_address]
    refused = await sh(
        str(temporal_binary()),
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        wid,
        "--name",
        "approve",
        "--input",
        json.dumps({"request_id": "wrong#1", "approver": "alice"}),
        *address,
        env=env,
    )
    assert refused.returncode != 0
    assert "not the pending one" in refused.stdout + refused.stderr

    wrong_id = await sh(*MENDLINE, "approvals", "approve", "nonsense", "--as", "alice", env=env)
    assert wrong_id.returncode == 2

    approved = await sh(
        str(temporal_binary()),
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        wid,
        "--name",
        "approve",
        "--input",
        json.dumps({"request_id": request_id, "approver": "alice"}),
        *address,
        env=env,
    )
    assert approved.returncode == 0, approved.stdout + approved.stderr

    result = await sh(
        str(temporal_binary()), "workflow", "result", "--workflow-id", wid, *address, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads((await sh(*MENDLINE, "source", "show", name, "--json", env=env)).stdout)
    assert shown["source"]["status"] == "ACTIVE"
