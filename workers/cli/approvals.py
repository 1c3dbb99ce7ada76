"""``mendline approvals …``: the people's side of the shared approval mechanism.

Pending requests are found through the ``MendlinePendingApproval`` search attribute, across
every workflow type that waits for a person; a request id is ``<workflow id>#<suffix>``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from models.approvals import ApprovalDecision, ApprovalOutcome, ApprovalStatus, approval_token
from workers.cli.common import (
    cli_client,
    console,
    fail,
    get_settings,
    parse_param,
    print_json,
    run_async,
)

approvals_app = typer.Typer(
    help="Decisions waiting for a person (scraper promotions, remediations).", no_args_is_help=True
)


async def pending(client: Client) -> list[ApprovalStatus]:
    """Every workflow that waits for an approval now, with its request."""
    found: list[ApprovalStatus] = []
    async for execution in client.list_workflows(
        "MendlinePendingApproval = true AND ExecutionStatus = 'Running'"
    ):
        try:
            status: ApprovalStatus = await client.get_workflow_handle(execution.id).query(
                "approval", result_type=ApprovalStatus
            )
        except RPCError:
            continue
        if status.pending is not None:
            found.append(status)
    return found


def _workflow_of(request_id: str) -> str:
    if "#" not in request_id:
        fail(
            f"{request_id!r} is not a request id (they look like source/books/onboard#v2); see `mendline approvals list`",
            2,
        )
    return request_id.rsplit("#", 1)[0]


@approvals_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the requests waiting for a decision."""

    async def go() -> list[ApprovalStatus]:
        return await pending(await cli_client())

    statuses = run_async(go())
    if as_json:
        print_json([s.model_dump(mode="json") for s in statuses])
        return
    table = Table("request", "kind", "subject", "why", "requested")
    for s in statuses:
        assert s.pending is not None
        p = s.pending
        table.add_row(
            escape(p.request_id),
            p.kind,
            escape(p.subject),
            escape(p.summary)[:80],
            str(p.requested_at or "")[:19],
        )
    console.print(table)
    if not statuses:
        console.print("nothing waits for approval")


@approvals_app.command("show")
def show(
    request_id: Annotated[str, typer.Argument(help="Request id from `approvals list`.")],
) -> None:
    """Show a request's evidence and history."""
    wid = _workflow_of(request_id)

    async def go() -> ApprovalStatus:
        client = await cli_client()
        try:
            status: ApprovalStatus = await client.get_workflow_handle(wid).query(
                "approval", result_type=ApprovalStatus
            )
        except RPCError as exc:
            fail(f"cannot query {wid}: {exc.message}")
        return status

    status = run_async(go())
    print_json(status.model_dump(mode="json"))


TokenOpt = Annotated[
    str | None,
    typer.Option(
        help="Approval token (HMAC-SHA256 of 'REQUEST_ID|APPROVER'); computed from "
        "MENDLINE_APPROVAL_SECRET when that is set."
    ),
]


def _decide(
    request_id: str,
    approve: bool,
    approver: str,
    reason: str,
    params: list[str] | None,
    token: str | None = None,
) -> None:
    wid = _workflow_of(request_id)
    secret = get_settings().approval_secret
    if token is None and secret is not None:
        token = approval_token(secret.get_secret_value(), request_id, approver)
    decision = ApprovalDecision(
        request_id=request_id,
        approver=approver,
        reason=reason,
        params=dict(parse_param(p) for p in params or []),
        token=token,
    )

    async def go() -> ApprovalOutcome:
        client = await cli_client()
        try:
            outcome: ApprovalOutcome = await client.get_workflow_handle(wid).execute_update(
                "approve" if approve else "reject", decision, result_type=ApprovalOutcome
            )
        except WorkflowUpdateFailedError as exc:
            fail(f"{'approval' if approve else 'rejection'} refused: {exc.cause or exc}")
        except RPCError as exc:
            fail(f"cannot reach {wid}: {exc.message}")
        return outcome

    outcome = run_async(go())
    verb = "approved" if outcome.approved else "rejected"
    extra = f" with {json.dumps(outcome.params)}" if outcome.params else ""
    console.print(f"{escape(request_id)} {verb} by {escape(outcome.approver or '?')}{extra}")


@approvals_app.command("approve")
def approve(
    request_id: Annotated[str, typer.Argument(help="Request id from `approvals list`.")],
    approver: Annotated[str, typer.Option("--as", help="Who approves (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="key=value to change on approval (repeatable)."),
    ] = None,
    token: TokenOpt = None,
) -> None:
    """Approve a pending request (the workflow's `approve` update; refused with the reason if invalid)."""
    _decide(request_id, True, approver, reason, param, token)


@approvals_app.command("reject")
def reject(
    request_id: Annotated[str, typer.Argument(help="Request id from `approvals list`.")],
    approver: Annotated[str, typer.Option("--as", help="Who rejects (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    token: TokenOpt = None,
) -> None:
    """Reject a pending request."""
    _decide(request_id, False, approver, reason, None, token)
