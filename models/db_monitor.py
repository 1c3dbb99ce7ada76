"""Database schema of the Monitor's memory between scans (the alert evaluator's state)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base


class MonitorStateRow(Base):
    """One named state (``alerts``: the :class:`~models.incidents.AlertState` JSON)."""

    __tablename__ = "monitor_state"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime]
