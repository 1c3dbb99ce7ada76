"""Sources themselves: adding, reading, listing, changing status and removing them."""

from __future__ import annotations

from sqlalchemy import select, update

from activities.sources_store.base import StoreBase, log
from activities.sources_store.errors import SourceExistsError, SourceRecord
from activities.sources_store.helpers import source_record
from activities.storage import utcnow
from models.db_sources import ScraperVersionRow, SourceRow
from models.sources import SourceConfig, SourceStatus


class SourcesMixin(StoreBase):
    """Create, read, list, re-status and remove sources."""

    def create_source(self, config: SourceConfig) -> None:
        """Store a new source in status ONBOARDING.

        Re-adding the name of a REMOVED source, or of one whose onboarding FAILED (it never
        got a working scraper), revives it with the new config: its old versions, pages and
        records stay, but no version is active and rollback will not reach versions of the
        old incarnation.

        Raises:
            SourceExistsError: A source that is neither removed nor failed has this name.
        """
        now = utcnow()
        with self._locked(config.name) as session:
            row = session.get(SourceRow, config.name)
            if row is not None and row.status not in (SourceStatus.REMOVED, SourceStatus.FAILED):
                raise SourceExistsError(config.name)
            dump = config.model_dump(mode="json")
            if row is None:
                session.add(
                    SourceRow(
                        name=config.name,
                        url=config.url,
                        config=dump,
                        status=SourceStatus.ONBOARDING.value,
                        active_version=None,
                        created_at=now,
                        updated_at=now,
                        removed_at=None,
                    )
                )
            else:
                if row.active_version is not None:
                    session.execute(
                        update(ScraperVersionRow)
                        .where(
                            ScraperVersionRow.source == config.name,
                            ScraperVersionRow.version == row.active_version,
                        )
                        .values(retired_at=now)
                    )
                row.url, row.config, row.status = config.url, dump, SourceStatus.ONBOARDING.value
                row.active_version, row.removed_at = None, None
                row.created_at = row.updated_at = now
            self._event(
                session, config.name, "added", {"url": config.url, "revived": row is not None}
            )
        log.info("source %s added (%s)", config.name, config.url)

    def get_source(self, name: str) -> SourceRecord | None:
        """The source called ``name`` (REMOVED ones included), or None."""
        with self._db.session() as session:
            row = session.get(SourceRow, name)
            return source_record(row) if row is not None else None

    def require_source(self, name: str) -> SourceRecord:
        """The live source called ``name``.

        Raises:
            SourceNotFoundError: No such source, or it was removed (lists close names).
        """
        with self._db.session() as session:
            return source_record(self._require(session, name))

    def list_sources(self, *, include_removed: bool = False) -> list[SourceRecord]:
        """Sources by name; REMOVED ones only when ``include_removed``."""
        stmt = select(SourceRow).order_by(SourceRow.name)
        if not include_removed:
            stmt = stmt.where(SourceRow.status != SourceStatus.REMOVED)
        with self._db.session() as session:
            return [source_record(row) for row in session.scalars(stmt)]

    def set_status(self, name: str, status: SourceStatus, reason: str = "") -> SourceStatus:
        """Change a live source's status and record a ``status_changed`` event.

        Idempotent: setting the current status again changes nothing and adds no event.

        Returns:
            The status before the call.
        """
        with self._locked(name) as session:
            row = self._require(session, name)
            previous = SourceStatus(row.status)
            if previous != status:
                row.status, row.updated_at = status.value, utcnow()
                detail = {"from": previous.value, "to": status.value, "reason": reason}
                self._event(session, name, "status_changed", detail)
            return previous

    def remove_source(self, name: str) -> None:
        """Mark a source REMOVED, keeping its data (idempotent).

        Raises:
            SourceNotFoundError: No source has this name.
        """
        with self._locked(name) as session:
            row = self._require(session, name, allow_removed=True)
            if row.status == SourceStatus.REMOVED:
                return
            now = utcnow()
            self._event(session, name, "removed", {"previous_status": row.status})
            row.status, row.removed_at, row.updated_at = SourceStatus.REMOVED.value, now, now
