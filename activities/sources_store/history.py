"""Scrape runs and the append-only history of events of a source."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from activities.sources_store.base import StoreBase
from activities.sources_store.errors import SourceEvent
from activities.sources_store.helpers import table_of, utc
from activities.storage import upsert
from models.db_sources import SourceEventRow, SourceRunRow
from models.sources import ScrapeStats


class HistoryMixin(StoreBase):
    """Record and list scrape runs and source events."""

    def record_run(self, stats: ScrapeStats) -> None:
        """Insert or update a scrape run by its ``run_id`` (idempotent)."""
        row = {
            "run_id": stats.run_id,
            "source": stats.source,
            "version": stats.version,
            "status": stats.status,
            "stats": stats.model_dump(mode="json"),
            "started_at": stats.started_at,
            "ended_at": stats.ended_at,
        }
        with self._db.session() as session:
            upsert(session, table_of(SourceRunRow), [row], ["run_id"])

    def runs(self, source: str, limit: int | None = 20) -> list[ScrapeStats]:
        """The source's scrape runs, newest start first."""
        stmt = (
            select(SourceRunRow.stats)
            .where(SourceRunRow.source == source)
            .order_by(SourceRunRow.started_at.desc().nulls_last(), SourceRunRow.run_id.desc())
            .limit(limit)
        )
        with self._db.session() as session:
            return [ScrapeStats.model_validate(stats) for stats in session.scalars(stmt)]

    def append_event(self, source: str, kind: str, detail: dict[str, Any] | None = None) -> None:
        """Add an entry to the source's history (``detail`` is stored as JSON)."""
        with self._db.session() as session:
            self._event(session, source, kind, detail or {})

    def events(self, source: str) -> list[SourceEvent]:
        """The source's history, oldest first."""
        stmt = (
            select(SourceEventRow)
            .where(SourceEventRow.source == source)
            .order_by(SourceEventRow.id)
        )
        with self._db.session() as session:
            return [
                SourceEvent(source=r.source, at=utc(r.at), kind=r.kind, detail=r.detail)
                for r in session.scalars(stmt)
            ]
