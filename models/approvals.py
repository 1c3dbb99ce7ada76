"""Contracts of the shared human-approval mechanism.

Any workflow that may need a person's decision (promoting a scraper, a remediation plan)
exposes the same handlers: updates ``approve`` / ``reject`` (validated: a bad or unauthorised
decision is rejected before it touches history and the caller gets the reason), signals of
the same names for fire-and-forget scripts, and the query ``approval``. While it waits, the
workflow sets the search attribute ``MendlinePendingApproval=true``, which is how
``mendline approvals list`` finds pending requests across the cluster.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

TimeoutAction = Literal["reject", "approve"]


class ApprovalRequest(BaseModel):
    """What a workflow asks a person to decide.

    Attributes:
        request_id: Identifier the decision must quote (``<workflow id>#<n>``).
        kind: What is being approved, e.g. ``promote_scraper``.
        subject: One line naming the thing (``source books v3``).
        summary: Why approval is needed.
        details: Evidence shown by ``mendline approvals show``.
        allowed_approvers: When non-empty, only these names may decide.
        editable_params: Parameters an approver may change, with their current values.
        timeout_seconds: How long to wait before ``on_timeout`` applies.
        on_timeout: What happens when nobody decides in time.
        token_sha256: Hashes of the approvers' tokens (see the field).
        param_action: Schema of editable params (a remediation action).
    """

    request_id: str
    kind: str
    subject: str
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    allowed_approvers: list[str] = Field(default_factory=list)
    editable_params: dict[str, Any] = Field(default_factory=dict)
    requested_at: datetime | None = None
    timeout_seconds: float = Field(86400.0, gt=0)
    on_timeout: TimeoutAction = "reject"
    token_sha256: dict[str, str] = Field(default_factory=dict)
    """Approver → SHA-256 of their approval token (HMAC-SHA256 of ``<request_id>|<approver>``
    keyed with ``MENDLINE_APPROVAL_SECRET``); when set, a decision must carry the token.
    Only hashes are stored, so history never holds a usable token."""
    param_action: str | None = None
    """The remediation action whose parameter schema edited params must fit."""


class ApprovalDecision(BaseModel):
    """Argument of the ``approve`` / ``reject`` updates and signals."""

    request_id: str = Field(min_length=1, max_length=300)
    approver: str = Field(min_length=1, max_length=200)
    reason: str = Field("", max_length=2000)
    params: dict[str, Any] = Field(default_factory=dict)
    token: str | None = Field(None, max_length=200)
    """The approval token, when the request requires one (``mendline approvals approve``
    computes it from ``MENDLINE_APPROVAL_SECRET``)."""


class ApprovalOutcome(BaseModel):
    """How a request ended: who decided what, through which channel, with which params."""

    request_id: str
    approved: bool
    approver: str | None = None
    reason: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    via: Literal["update", "signal", "timeout"] = "update"
    decided_at: datetime | None = None


class ApprovalStatus(BaseModel):
    """The ``approval`` query: the pending request (if any) and past outcomes."""

    workflow_id: str
    pending: ApprovalRequest | None = None
    history: list[ApprovalOutcome] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)
    """Signals that were invalid (signals cannot be refused, so they are recorded here)."""


def approval_token(secret: str, request_id: str, approver: str) -> str:
    """The approval token of ``approver`` for ``request_id``: HMAC-SHA256 of
    ``<request_id>|<approver>`` keyed with ``secret`` (``MENDLINE_APPROVAL_SECRET``), hex.

    A script computes the same with
    ``printf '%s|%s' "$ID" alice | openssl dgst -sha256 -hmac "$SECRET"``.
    """
    message = f"{request_id}|{approver}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
