"""Database schema of incidents and the alerts sent about them.

The tables share :class:`models.db.Base` (and so its naming convention and migrations).
An incident is unique by ``(fingerprint, opened_at)``, an alert by ``(fingerprint, kind,
at)``: both natural keys come from the evaluation, so a retried activity writes nothing
twice. At most one incident per fingerprint is open at a time (the store enforces it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base
from models.incidents import FINGERPRINT_LENGTH


class IncidentRow(Base):
    """One incident (``labels`` and ``breaches`` are JSON dumps of the model fields)."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("fingerprint", "opened_at", name="uq_incidents_fingerprint_opened_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH), index=True)
    rule: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    labels: Mapped[dict[str, Any]] = mapped_column()
    summary: Mapped[str] = mapped_column(Text)
    breaches: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_breach_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolution: Mapped[str | None] = mapped_column(Text)
    alerts_sent: Mapped[int] = mapped_column(Integer, default=0)


class AlertRow(Base):
    """One alert about an incident (or a test alert), with its per-notifier deliveries."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("fingerprint", "kind", "at", name="uq_alerts_fingerprint_kind_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, index=True)
    fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_LENGTH))
    rule: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime]
    title: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column()
    deliveries: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
