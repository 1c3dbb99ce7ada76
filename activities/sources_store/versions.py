"""Scraper versions of a source: adding, reading, promoting and rolling back."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from activities.sources_store.base import StoreBase, log
from activities.sources_store.errors import VersionNotFoundError
from activities.sources_store.helpers import PROMOTION_EVENTS, utc, version_info
from activities.storage import utcnow
from models.db_sources import ScraperVersionRow, SourceEventRow, SourceRow
from models.scraper import ScraperSpec, SpecAuthor, SpecMeta, ValidationReport
from models.sources import ScraperVersionInfo


class VersionsMixin(StoreBase):
    """Store, read, promote and roll back a source's scraper versions."""

    def add_version(
        self,
        source: str,
        spec: ScraperSpec,
        author: SpecAuthor,
        confidence: float,
        module: str,
        parent_sha256: str | None = None,
    ) -> ScraperVersionInfo:
        """Store ``spec`` as the source's next version (``max + 1``).

        Idempotent by ``spec.sha256()``: a spec the source already has returns that version
        unchanged. The stored spec's ``meta`` is filled in (version, parent, author, time).

        Raises:
            SourceNotFoundError: No live source has this name.
        """
        digest = spec.sha256()
        with self._locked(source) as session:
            src = self._require(session, source)
            existing = session.scalar(
                select(ScraperVersionRow).where(
                    ScraperVersionRow.source == source, ScraperVersionRow.sha256 == digest
                )
            )
            if existing is not None:
                return version_info(existing, src.active_version)
            latest = session.scalar(
                select(func.max(ScraperVersionRow.version)).where(
                    ScraperVersionRow.source == source
                )
            )
            version, now = (latest or 0) + 1, utcnow()
            meta = SpecMeta(
                version=version,
                parent_sha=parent_sha256,
                author=author,
                created_at=now,
                notes=spec.meta.notes,
            )
            row = ScraperVersionRow(
                source=source,
                version=version,
                sha256=digest,
                parent_sha256=parent_sha256,
                author=author,
                spec=spec.model_copy(update={"meta": meta}).model_dump(mode="json"),
                module=module,
                confidence=confidence,
                report=None,
                created_at=now,
                promoted_at=None,
                retired_at=None,
            )
            session.add(row)
            detail = {"version": version, "sha256": digest, "author": author}
            self._event(session, source, "version_added", detail)
            return version_info(row, src.active_version)

    def _version_row(self, session: Session, source: str, version: int) -> ScraperVersionRow:
        row = session.scalar(
            select(ScraperVersionRow).where(
                ScraperVersionRow.source == source, ScraperVersionRow.version == version
            )
        )
        if row is None:
            available = session.scalars(
                select(ScraperVersionRow.version)
                .where(ScraperVersionRow.source == source)
                .order_by(ScraperVersionRow.version)
            ).all()
            raise VersionNotFoundError(source, version, available)
        return row

    def get_version(self, source: str, version: int) -> ScraperVersionInfo:
        """One version of a source's scraper.

        Raises:
            SourceNotFoundError: No such source.
            VersionNotFoundError: The source has no such version.
        """
        with self._db.session() as session:
            src = self._require(session, source, allow_removed=True)
            return version_info(self._version_row(session, source, version), src.active_version)

    def version_module(self, source: str, version: int) -> str:
        """The rendered Python module stored with a version ("" when none was rendered)."""
        with self._db.session() as session:
            return self._version_row(session, source, version).module

    def active_version(self, source: str) -> ScraperVersionInfo | None:
        """The version in use, or None before the first promotion.

        Raises:
            SourceNotFoundError: No live source has this name.
        """
        with self._db.session() as session:
            src = self._require(session, source)
            if src.active_version is None:
                return None
            row = self._version_row(session, source, src.active_version)
            return version_info(row, src.active_version)

    def list_versions(self, source: str) -> list[ScraperVersionInfo]:
        """Every version of a source, oldest first."""
        with self._db.session() as session:
            src = self._require(session, source, allow_removed=True)
            rows = session.scalars(
                select(ScraperVersionRow)
                .where(ScraperVersionRow.source == source)
                .order_by(ScraperVersionRow.version)
            )
            return [version_info(row, src.active_version) for row in rows]

    def set_report(self, source: str, version: int, report: ValidationReport) -> None:
        """Attach (or replace) the validation report of a version."""
        with self._db.session() as session:
            self._version_row(session, source, version).report = report.model_dump(mode="json")

    def promote(self, source: str, version: int) -> int | None:
        """Make ``version`` the active one; the previous stays stored (retired) for rollback.

        Idempotent: promoting the active version again changes nothing and returns the
        version its promotion replaced, as the first call did.

        Returns:
            The version that was active before, or None.

        Raises:
            SourceNotFoundError: No live source has this name.
            VersionNotFoundError: The source has no such version.
        """
        with self._locked(source) as session:
            src = self._require(session, source)
            row = self._version_row(session, source, version)
            if src.active_version == version:
                return self._replaced_by(session, source, version)
            previous = self._activate(session, src, row)
            self._event(
                session,
                source,
                "version_promoted",
                {"version": version, "previous": previous, "sha256": row.sha256},
            )
        log.info("source %s: version %s promoted (was %s)", source, version, previous)
        return previous

    def rollback(self, source: str, *, from_version: int | None = None) -> int | None:
        """Re-activate the newest version older than the active one that was ever promoted.

        Args:
            source: The source.
            from_version: Roll back only if this version is still active. Pass it from
                activities: a retry after the first attempt committed then returns the
                version already rolled back to instead of rolling back a second step.

        Returns:
            The version now active, or None when there is nothing to roll back to (nothing
            then changes).
        """
        with self._locked(source) as session:
            src = self._require(session, source)
            active = src.active_version
            if from_version is not None and active != from_version:
                return active
            if active is None:
                return None
            target = self._rollback_row(session, src, active)
            if target is None:
                return None
            self._activate(session, src, target)
            detail = {"version": target.version, "previous": active, "sha256": target.sha256}
            self._event(session, source, "version_rolled_back", detail)
        log.info("source %s: rolled back from version %s to %s", source, active, target.version)
        return target.version

    def rollback_target(self, source: str) -> int | None:
        """The version :meth:`rollback` would re-activate now, or None."""
        with self._db.session() as session:
            src = self._require(session, source)
            if src.active_version is None:
                return None
            row = self._rollback_row(session, src, src.active_version)
            return row.version if row is not None else None

    @staticmethod
    def _rollback_row(session: Session, src: SourceRow, active: int) -> ScraperVersionRow | None:
        candidates = session.scalars(
            select(ScraperVersionRow)
            .where(
                ScraperVersionRow.source == src.name,
                ScraperVersionRow.version < active,
                ScraperVersionRow.promoted_at.is_not(None),
            )
            .order_by(ScraperVersionRow.version.desc())
        )
        # Versions older than the source's (re)creation belong to a removed incarnation.
        created = utc(src.created_at)
        return next((r for r in candidates if utc(r.created_at) >= created), None)

    @staticmethod
    def _activate(session: Session, src: SourceRow, row: ScraperVersionRow) -> int | None:
        previous, now = src.active_version, utcnow()
        if previous is not None:
            session.execute(
                update(ScraperVersionRow)
                .where(ScraperVersionRow.source == src.name, ScraperVersionRow.version == previous)
                .values(retired_at=now)
            )
        row.promoted_at, row.retired_at = now, None
        src.active_version, src.updated_at = row.version, now
        return previous

    @staticmethod
    def _replaced_by(session: Session, source: str, version: int) -> int | None:
        events = session.scalars(
            select(SourceEventRow)
            .where(SourceEventRow.source == source, SourceEventRow.kind.in_(PROMOTION_EVENTS))
            .order_by(SourceEventRow.id.desc())
        )
        for event in events:
            if event.detail.get("version") == version:
                previous: int | None = event.detail.get("previous")
                return previous
        return None
