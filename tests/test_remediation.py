"""The remediation loop on the real dev server: a task that fails for good starts a
Remediation; policy lets safe actions run alone, makes risky ones wait for a person (role,
HMAC token and parameter schema checked by the update validator, nothing written for a
refused one), runs an edited plan while the original stays on record, escalates when nobody
decides, and every step lands in the tamper-evident audit log."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)

from activities.audit import AuditLog
from activities.storage import Database
from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus, approval_token
from models.remediation import DecisionState
from models.runs import PipelineRunInput, PipelineRunState, RunStatus, TaskStatus
from models.settings import Settings
from workers.worker import create_worker

pytestmark = pytest.mark.slow

SECRET = "correct horse battery staple"


@pytest.fixture
def remediating(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "remediation": "on",
            "environment": "production",
            "approval_secret": SecretStr(SECRET),
            "policy": Path("examples/policy.yaml").resolve(),
        }
    )


@pytest.fixture
def unauthorised() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": "token expired for ops@example.com"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/orders"
    server.shutdown()
    server.server_close()


async def start(
    client: Client, settings: Settings, spec: dict[str, Any], **kw: Any
) -> WorkflowHandle[Any, PipelineRunState]:
    return await client.start_workflow(
        "PipelineRun",
        PipelineRunInput(pipeline=spec, **kw),
        id=f"pipeline/{spec['name']}/{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue,
        result_type=PipelineRunState,
    )


async def pending_approval(client: Client, wid: str, timeout: float = 60) -> ApprovalStatus:
    handle = client.get_workflow_handle(wid)
    deadline = time.monotonic() + timeout
    while True:
        try:
            status: ApprovalStatus = await handle.query("approval", result_type=ApprovalStatus)
            if status.pending is not None:
                return status
        except Exception:  # not started yet
            pass
        assert time.monotonic() < deadline, f"{wid} never asked for approval"
        await asyncio.sleep(0.2)


async def result_state(handle: WorkflowHandle[Any, PipelineRunState]) -> PipelineRunState:
    try:
        return await handle.result()
    except WorkflowFailureError:
        state: PipelineRunState = await handle.query("state", result_type=PipelineRunState)
        return state


async def test_a_timeout_is_tuned_after_an_edited_approval_and_the_run_succeeds(
    client: Client, remediating: Settings
) -> None:
    settings = remediating
    spec = {
        "name": "slowpoke",
        "tasks": [
            {
                "name": "crunch",
                "type": "sleep",
                "mode": "activity",
                "params": {"seconds": 2},
                "timeout": "1s",
                "retry": {"max_attempts": 1},
            },
            {"name": "publish", "type": "noop", "depends_on": ["crunch"]},
        ],
    }
    async with create_worker(client, settings):
        run = await start(client, settings, spec)
        wid = f"remediation/{run.id}/crunch"
        status = await pending_approval(client, wid)
        request = status.pending
        assert request is not None and request.kind == "remediation"
        assert request.param_action == "tune" and "timeout_seconds" in request.editable_params
        state = await run.query("state", result_type=PipelineRunState)
        assert state.tasks["crunch"].remediation == wid

        handle = client.get_workflow_handle(wid)
        rid = request.request_id

        async def refused(decision: ApprovalDecision) -> str:
            with pytest.raises(WorkflowUpdateFailedError) as caught:
                await handle.execute_update("approve", decision, result_type=ApprovalOutcome)
            return str(caught.value.cause)

        token = approval_token(SECRET, rid, "alice")
        assert "may not approve" in await refused(
            ApprovalDecision(
                request_id=rid, approver="mallory", token=approval_token(SECRET, rid, "mallory")
            )
        )
        assert "approval token" in await refused(ApprovalDecision(request_id=rid, approver="alice"))
        assert "approval token" in await refused(
            ApprovalDecision(request_id=rid, approver="alice", token="0" * 64)
        )
        assert "outside" in await refused(
            ApprovalDecision(
                request_id=rid, approver="alice", token=token, params={"timeout_seconds": 0}
            )
        )
        assert "cannot be set" in await refused(
            ApprovalDecision(
                request_id=rid, approver="alice", token=token, params={"shell": "rm -rf /"}
            )
        )
        assert "not the pending one" in await refused(
            ApprovalDecision(request_id=rid + "x", approver="alice", token=token)
        )
        # Refused updates leave no trace in history.
        history = await handle.fetch_history()
        assert not [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]

        outcome = await handle.execute_update(
            "approve",
            ApprovalDecision(
                request_id=rid,
                approver="alice",
                token=token,
                reason="give it time",
                params={"timeout_seconds": 10},
            ),
            result_type=ApprovalOutcome,
        )
        assert outcome.approved and outcome.approver == "alice"

        final = await run.result()
        assert final.status == RunStatus.SUCCEEDED
        assert final.tasks["crunch"].status == TaskStatus.SUCCEEDED
        assert final.tasks["crunch"].remediation_action == "tune"
        assert final.tasks["publish"].status == TaskStatus.SUCCEEDED

        decision = await handle.query("decision", result_type=DecisionState)
        assert decision.prediction is not None and 0 <= decision.prediction.risk <= 1
        assert decision.features is not None and decision.planning is not None
        assert decision.planning.plan.action == "tune" and decision.planning.runbooks
        assert decision.verdict is not None and decision.verdict.verdict == "needs_approval"
        assert decision.approved_by == "alice"
        assert decision.original_plan is not None
        assert decision.original_plan.parameters["timeout_seconds"] != 10
        assert (
            decision.executed is not None and decision.executed.parameters["timeout_seconds"] == 10
        )

    audit = AuditLog(Database(settings.resolved_database_url), settings.resolved_audit_log)
    entries = [e for e in audit.entries() if e.workflow_id == wid]
    assert [e.kind for e in entries] == ["plan", "verdict", "approval", "execution", "outcome"]
    assert audit.verify().intact


async def test_expired_auth_escalates_alone_redacted_and_dry_run_only_says_what_it_would_do(
    client: Client, remediating: Settings, unauthorised: str
) -> None:
    settings = remediating
    spec = {
        "name": "pull_orders",
        "tasks": [
            {
                "name": "pull",
                "type": "http",
                "params": {"url": unauthorised},
                "retry": {"max_attempts": 1},
            },
            {"name": "after", "type": "noop", "depends_on": ["pull"]},
        ],
    }
    async with create_worker(client, settings):
        run = await start(client, settings, spec)
        state = await result_state(run)
        assert state.status == RunStatus.FAILED
        task = state.tasks["pull"]
        assert task.status == TaskStatus.FAILED and task.remediation_action == "escalate"
        assert "escalated" in (task.remediation_outcome or "")
        assert state.tasks["after"].status == TaskStatus.UPSTREAM_FAILED
        decision = await client.get_workflow_handle(task.remediation or "").query(
            "decision", result_type=DecisionState
        )
        assert decision.verdict is not None and decision.verdict.verdict == "execute"
        assert decision.approved_by is None

        dry = await start(
            client, settings, {**spec, "name": "pull_orders_dry"}, remediation="dry-run"
        )
        dry_state = await result_state(dry)
        assert dry_state.tasks["pull"].remediation_outcome is not None
        assert "would" in dry_state.tasks["pull"].remediation_outcome
        dry_decision = await client.get_workflow_handle(
            dry_state.tasks["pull"].remediation or ""
        ).query("decision", result_type=DecisionState)
        assert dry_decision.executed is not None and dry_decision.executed.dry_run


async def test_nobody_deciding_escalates_instead_of_failing(
    client: Client, remediating: Settings, tmp_path: Path
) -> None:
    policy = tmp_path / "quick.yaml"
    policy.write_text(
        Path("examples/policy.yaml")
        .read_text(encoding="utf-8")
        .replace(
            "timeout: 1h                    # how long", "timeout: 2s                    # how long"
        )
        .replace("    approval:\n      timeout: 1h", "    approval:\n      timeout: 2s"),
        encoding="utf-8",
    )
    settings = remediating.model_copy(update={"policy": policy})
    spec = {
        "name": "nobody_home",
        "tasks": [
            {
                "name": "crunch",
                "type": "sleep",
                "mode": "activity",
                "params": {"seconds": 2},
                "timeout": "1s",
                "retry": {"max_attempts": 1},
            }
        ],
    }
    async with create_worker(client, settings):
        run = await start(client, settings, spec)
        state = await result_state(run)
        task = state.tasks["crunch"]
        assert task.status == TaskStatus.FAILED
        assert task.remediation_action == "escalate"
        assert "no decision within 2s" in (task.remediation_outcome or "")


async def test_a_local_task_alerts_alone_and_a_signal_approves_a_tune(
    client: Client, remediating: Settings
) -> None:
    settings = remediating.model_copy(update={"approval_secret": None})
    quality = {
        "name": "quality",
        "tasks": [
            {
                "name": "check",
                "type": "validate",
                "mode": "local",
                "params": {"records": [{"id": 1}], "rules": [{"row_count": {"min": 5}}]},
            },
            {"name": "load", "type": "noop", "depends_on": ["check"]},
        ],
    }
    slow = {
        "name": "slow_report",
        "tasks": [
            {
                "name": "crunch",
                "type": "sleep",
                "mode": "activity",
                "params": {"seconds": 2},
                "timeout": "1s",
                "retry": {"max_attempts": 1},
            }
        ],
    }
    async with create_worker(client, settings):
        # A local task's failure is remediated too: a data-quality alert runs alone.
        state = await result_state(await start(client, settings, quality))
        assert state.status == RunStatus.FAILED
        assert state.tasks["check"].remediation_action == "alert"
        assert "alert sent" in (state.tasks["check"].remediation_outcome or "")
        assert state.tasks["load"].status == TaskStatus.UPSTREAM_FAILED

        run = await start(client, settings, slow)
        wid = f"remediation/{run.id}/crunch"
        status = await pending_approval(client, wid)
        assert status.pending is not None
        handle = client.get_workflow_handle(wid)
        rid = status.pending.request_id
        # A signal cannot be refused: an invalid one is recorded and ignored …
        await handle.signal("approve", ApprovalDecision(request_id=rid, approver="mallory"))
        # … and a valid one decides.
        await handle.signal(
            "approve",
            ApprovalDecision(request_id=rid, approver="bob", params={"timeout_seconds": 10}),
        )
        final = await result_state(run)
        assert final.status == RunStatus.SUCCEEDED, final
        approval = await handle.query("approval", result_type=ApprovalStatus)
        assert approval.ignored and "mallory" in approval.ignored[0]
        assert [o.via for o in approval.history] == ["signal"]
