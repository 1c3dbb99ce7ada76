"""Database schema of the remediation loop: the failure predictor's model registry and the
tamper-evident audit log.

The tables share :class:`models.db.Base` (and so its naming convention and migrations).

``predictor_models`` keeps every registered model version with its artifact: the canonical
JSON of a logistic regression (never a pickle), whose SHA-256 is stored beside it and
checked on every load. ``audit_log`` is a hash chain: each entry carries the SHA-256 of the
previous one, ids are assigned under a lock without gaps (not by a sequence, which a rolled
back transaction would leave holes in), so a missing id always means a removed entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base

MODEL_NAME_LENGTH = 100
DEDUPE_KEY_LENGTH = 400


class PredictorModelRow(Base):
    """One registered version of a failure-prediction model."""

    __tablename__ = "predictor_models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_predictor_models_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(MODEL_NAME_LENGTH), index=True)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column()
    artifact: Mapped[str] = mapped_column(Text)
    """The model's canonical JSON, exactly the bytes ``sha256`` was computed over."""
    created_at: Mapped[datetime]
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditLogRow(Base):
    """One entry of the audit hash chain (see :class:`models.remediation.AuditEntry`)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    workflow_id: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column()
    dedupe_key: Mapped[str] = mapped_column(String(DEDUPE_KEY_LENGTH), unique=True)
    prev_sha256: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
