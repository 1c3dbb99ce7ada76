"""Mendline's database schema (SQLAlchemy 2). Migrations live in ``migrations/``.

Works on SQLite (the default, WAL mode) and PostgreSQL. Every write path is idempotent on
a natural key, so an activity that is retried after a crash never duplicates a row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class PipelineRunRow(Base):
    """One pipeline run (one ``PipelineRun`` workflow execution)."""

    __tablename__ = "pipeline_runs"

    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255), index=True)
    pipeline: Mapped[str] = mapped_column(String(100), index=True)
    pipeline_version: Mapped[str] = mapped_column(String(50), default="")
    spec_sha256: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    task_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class TaskAttemptRow(Base):
    """Telemetry: one attempt of one task (``attempt`` counts from 1)."""

    __tablename__ = "task_attempts"
    __table_args__ = (
        UniqueConstraint("run_id", "task", "attempt", name="uq_task_attempts_run_task_attempt"),
        Index("ix_task_attempts_pipeline_task", "pipeline", "task"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(255), index=True)
    pipeline: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(100))
    task_type: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(20), default="activity")
    status: Mapped[str] = mapped_column(String(20))
    cached: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    duration_ms: Mapped[float | None] = mapped_column(Float)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    records_in: Mapped[int | None] = mapped_column(Integer)
    records_out: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(255), default="")


class TaskOutputRow(Base):
    """A large task output, stored once by the SHA-256 of its JSON (content-addressed)."""

    __tablename__ = "task_outputs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class TaskCacheRow(Base):
    """Result cache: cache key (hash of type, rendered params, handler version) to output."""

    __tablename__ = "task_cache"

    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_type: Mapped[str] = mapped_column(String(100))
    output: Mapped[dict[str, Any]] = mapped_column()
    records_out: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
