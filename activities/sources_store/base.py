"""What every part of :class:`~activities.sources_store.SourceStore` builds on: the database,
the per-source lock, looking a source up and appending to its history."""

from __future__ import annotations

import difflib
import json
import logging
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.sources_store.errors import SourceNotFoundError
from activities.sources_store.helpers import canonical_json
from activities.sources_store.locking import locked_session
from activities.storage import Database, utcnow
from models.db_sources import SourceEventRow, SourceRow
from models.sources import SourceStatus

# One logger for the whole package, named as it was before the store was split up.
log = logging.getLogger("activities.sources_store")


class StoreBase:
    """The database handle and the helpers the store's mixins share.

    Args:
        db: Mendline's database, migrated (``Database(url)`` migrates on open).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def _locked(self, source: str) -> AbstractContextManager[Session]:
        """A transaction holding the source's write lock until it ends."""
        return locked_session(self._db, source)

    def _require(self, session: Session, name: str, *, allow_removed: bool = False) -> SourceRow:
        row = session.get(SourceRow, name)
        if row is not None and (allow_removed or row.status != SourceStatus.REMOVED):
            return row
        if row is not None:
            raise SourceNotFoundError(name, removed=True)
        live = session.scalars(
            select(SourceRow.name).where(SourceRow.status != SourceStatus.REMOVED)
        ).all()
        raise SourceNotFoundError(name, difflib.get_close_matches(name, live, n=3, cutoff=0.6))

    @staticmethod
    def _event(session: Session, source: str, kind: str, detail: dict[str, Any]) -> None:
        session.add(
            SourceEventRow(
                source=source, at=utcnow(), kind=kind, detail=json.loads(canonical_json(detail))
            )
        )
