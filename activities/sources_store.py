"""Storage of sources: their config and status, scraper versions, bronze pages, silver
records, scrape runs and an append-only history of events.

Activities call these synchronous methods through ``asyncio.to_thread``; each method is one
transaction. Writes an activity may retry are idempotent (noted per method), so a retry after
a crash never duplicates a row.

Methods that read before they write (creating a source, numbering a version, promoting,
classifying records) first take a per-source lock — ``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock on PostgreSQL — so two workers touching the same source
queue up instead of both acting on the same stale read.

Errors::

    SourceStoreError
    ├── SourceExistsError       a live source already has the name
    ├── SourceNotFoundError     no such source (or it was removed)
    ├── VersionNotFoundError    no such scraper version
    └── PageNotFoundError       no such bronze page

Each has a ``type_name`` so activities can raise it as a non-retryable ``ApplicationError``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel
from sqlalchemy import Table, and_, func, select, text, update
from sqlalchemy.orm import Session

from activities.storage import Database, as_utc, upsert, utcnow
from models.db_sources import (
    RECORD_KEY_LENGTH,
    BronzePageRow,
    ScraperVersionRow,
    SilverObservationRow,
    SilverRecordRow,
    SourceEventRow,
    SourceRow,
    SourceRunRow,
)
from models.scraper import ScraperSpec, SpecAuthor, SpecMeta, ValidationReport
from models.sources import PageRef, ScraperVersionInfo, ScrapeStats, SourceConfig, SourceStatus

log = logging.getLogger(__name__)

SOURCE_LOCK_CLASS = 0x53524345  # "SRCE": first key of the two-key PostgreSQL advisory lock
KEY_BATCH = 500  # keys per IN (...) lookup, well under every database's parameter limit
HASH_KEY_PREFIX = "sha256:"
PROMOTION_EVENTS = ("version_promoted", "version_rolled_back")


# --- errors ------------------------------------------------------------------------------------


class SourceStoreError(Exception):
    """Base of the errors of :class:`SourceStore`."""

    type_name: ClassVar[str] = "SourceStoreError"


class SourceExistsError(SourceStoreError):
    """A source that is not removed already has this name."""

    type_name: ClassVar[str] = "SourceExistsError"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a source named {name!r} already exists; pick another name, or remove it first "
            f"with `mendline source remove {name}`"
        )


class SourceNotFoundError(SourceStoreError):
    """No source has this name, or it was removed."""

    type_name: ClassVar[str] = "SourceNotFoundError"

    def __init__(self, name: str, close: Sequence[str] = (), *, removed: bool = False) -> None:
        self.name = name
        self.close = list(close)
        self.removed = removed
        if removed:
            hint = "it was removed; add it again with `mendline source add` to revive it"
        elif self.close:
            hint = "did you mean " + ", ".join(repr(n) for n in self.close) + "?"
        else:
            hint = "`mendline source list` shows the sources"
        super().__init__(f"no source named {name!r}: {hint}")


class VersionNotFoundError(SourceStoreError):
    """The source has no scraper version with this number."""

    type_name: ClassVar[str] = "VersionNotFoundError"

    def __init__(self, source: str, version: int, available: Sequence[int] = ()) -> None:
        self.source = source
        self.version = version
        self.available = list(available)
        known = ", ".join(map(str, self.available)) if self.available else "none yet"
        super().__init__(
            f"source {source!r} has no scraper version {version} (versions: {known}); "
            f"`mendline source versions {source}` lists them"
        )


class PageNotFoundError(SourceStoreError):
    """No bronze page has this id."""

    type_name: ClassVar[str] = "PageNotFoundError"

    def __init__(self, bronze_id: int) -> None:
        self.bronze_id = bronze_id
        super().__init__(f"no bronze page with id {bronze_id} is stored")


# --- views -------------------------------------------------------------------------------------


class SourceRecord(BaseModel):
    """A stored source as callers see it."""

    name: str
    url: str
    config: SourceConfig
    status: SourceStatus
    active_version: int | None = None
    created_at: datetime
    updated_at: datetime
    removed_at: datetime | None = None


class SourceEvent(BaseModel):
    """One entry of a source's history."""

    source: str
    at: datetime
    kind: str
    detail: dict[str, Any]


# --- helpers -----------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal data gives equal text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def record_key(record: dict[str, Any], key_field: str | None) -> str:
    """The silver key of a record.

    The value of ``key_field`` when the record has a non-empty one (non-strings as their
    canonical JSON); otherwise ``"sha256:"`` + the SHA-256 of the record's canonical JSON, so
    a keyless record is identified by its content (a change makes it a new record). A natural
    key longer than the column (512 characters) is stored as ``"sha256:"`` + its hash.
    """
    value = record.get(key_field) if key_field else None
    if _is_blank(value):
        return HASH_KEY_PREFIX + _sha256(canonical_json(record))
    key = value if isinstance(value, str) else canonical_json(value)
    if len(key) > RECORD_KEY_LENGTH:
        return HASH_KEY_PREFIX + _sha256(key)
    return key


def _is_blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, list | dict) and not value)


def _utc(value: datetime) -> datetime:
    aware = as_utc(value)
    assert aware is not None  # as_utc only returns None for None
    return aware


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _lock_key(source: str) -> int:
    # A signed 32-bit int, the second key of pg_advisory_xact_lock(int, int).
    return int.from_bytes(hashlib.sha256(source.encode()).digest()[:4], "big", signed=True)


def _source_record(row: SourceRow) -> SourceRecord:
    return SourceRecord(
        name=row.name,
        url=row.url,
        config=SourceConfig.model_validate(row.config),
        status=SourceStatus(row.status),
        active_version=row.active_version,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        removed_at=as_utc(row.removed_at),
    )


def _version_info(row: ScraperVersionRow, active_version: int | None) -> ScraperVersionInfo:
    return ScraperVersionInfo(
        source=row.source,
        version=row.version,
        sha256=row.sha256,
        parent_sha256=row.parent_sha256,
        author=row.author,
        created_at=as_utc(row.created_at),
        spec=ScraperSpec.model_validate(row.spec),
        confidence=row.confidence,
        active=row.version == active_version,
        report=ValidationReport.model_validate(row.report) if row.report is not None else None,
    )


def _page_ref(row: Any) -> PageRef:
    return PageRef(
        bronze_id=row.id,
        url=row.url,
        final_url=row.final_url,
        status=row.status,
        content_type=row.content_type,
        sha256=row.sha256,
        size=row.size,
        rendered=row.rendered,
        fetched_at=as_utc(row.fetched_at),
    )


_PAGE_COLUMNS = [c for c in _table(BronzePageRow).c if c.name != "body"]


# --- the store ---------------------------------------------------------------------------------


class SourceStore:
    """Sources, scraper versions, bronze pages, silver records, runs and events.

    Args:
        db: Mendline's database, migrated (``Database(url)`` migrates on open).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def _locked(self, source: str) -> Iterator[Session]:
        """A transaction holding the source's write lock until it ends."""
        with self._db.session() as session:
            conn = session.connection()
            if conn.dialect.name == "sqlite":
                # pysqlite only opens a transaction at the first write, so reads before it
                # would see a stale snapshot; take the write lock up front (waits out the
                # busy timeout behind another writer).
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:cls, :key)"),
                    {"cls": SOURCE_LOCK_CLASS, "key": _lock_key(source)},
                )
            yield session

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

    # --- sources -------------------------------------------------------------------------------

    def create_source(self, config: SourceConfig) -> None:
        """Store a new source in status ONBOARDING.

        Re-adding the name of a REMOVED source revives it with the new config: its old
        versions, pages and records stay, but no version is active and rollback will not
        reach versions of the old incarnation.

        Raises:
            SourceExistsError: A source that is not removed has this name.
        """
        now = utcnow()
        with self._locked(config.name) as session:
            row = session.get(SourceRow, config.name)
            if row is not None and row.status != SourceStatus.REMOVED:
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
            return _source_record(row) if row is not None else None

    def require_source(self, name: str) -> SourceRecord:
        """The live source called ``name``.

        Raises:
            SourceNotFoundError: No such source, or it was removed (lists close names).
        """
        with self._db.session() as session:
            return _source_record(self._require(session, name))

    def list_sources(self, *, include_removed: bool = False) -> list[SourceRecord]:
        """Sources by name; REMOVED ones only when ``include_removed``."""
        stmt = select(SourceRow).order_by(SourceRow.name)
        if not include_removed:
            stmt = stmt.where(SourceRow.status != SourceStatus.REMOVED)
        with self._db.session() as session:
            return [_source_record(row) for row in session.scalars(stmt)]

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
        log.info("source %s removed", name)

    # --- scraper versions ----------------------------------------------------------------------

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
                return _version_info(existing, src.active_version)
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
            return _version_info(row, src.active_version)

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
            return _version_info(self._version_row(session, source, version), src.active_version)

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
            return _version_info(row, src.active_version)

    def list_versions(self, source: str) -> list[ScraperVersionInfo]:
        """Every version of a source, oldest first."""
        with self._db.session() as session:
            src = self._require(session, source, allow_removed=True)
            rows = session.scalars(
                select(ScraperVersionRow)
                .where(ScraperVersionRow.source == source)
                .order_by(ScraperVersionRow.version)
            )
            return [_version_info(row, src.active_version) for row in rows]

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
            created = _utc(src.created_at)
            candidates = session.scalars(
                select(ScraperVersionRow)
                .where(
                    ScraperVersionRow.source == source,
                    ScraperVersionRow.version < active,
                    ScraperVersionRow.promoted_at.is_not(None),
                )
                .order_by(ScraperVersionRow.version.desc())
            )
            # Versions older than the source's (re)creation belong to a removed incarnation.
            target = next((r for r in candidates if _utc(r.created_at) >= created), None)
            if target is None:
                return None
            self._activate(session, src, target)
            detail = {"version": target.version, "previous": active, "sha256": target.sha256}
            self._event(session, source, "version_rolled_back", detail)
        log.info("source %s: rolled back from version %s to %s", source, active, target.version)
        return target.version

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

    # --- bronze pages --------------------------------------------------------------------------

    def put_page(
        self,
        source: str,
        url: str,
        final_url: str,
        status: int,
        headers: dict[str, str],
        content_type: str,
        body: bytes,
        rendered: bool,
        run_id: str | None,
    ) -> PageRef:
        """Store a fetched page; an identical refetch (same source, URL and body) adds
        nothing and returns the stored page (with its first ``fetched_at``)."""
        digest, url_digest = _sha256(body), _sha256(url)
        row = {
            "source": source,
            "url": url,
            "url_sha256": url_digest,
            "final_url": final_url,
            "status": status,
            "headers": dict(headers),
            "content_type": content_type,
            "sha256": digest,
            "size": len(body),
            "body": zlib.compress(body, 6),
            "rendered": rendered,
            "fetched_at": utcnow(),
            "run_id": run_id or None,
        }
        keys = ["source", "url_sha256", "sha256"]
        with self._db.session() as session:
            upsert(session, _table(BronzePageRow), [row], keys, update=[])
            stored = session.execute(
                select(*_PAGE_COLUMNS).where(
                    BronzePageRow.source == source,
                    BronzePageRow.url_sha256 == url_digest,
                    BronzePageRow.sha256 == digest,
                )
            ).one()
            return _page_ref(stored)

    def get_page(self, bronze_id: int) -> tuple[PageRef, bytes]:
        """A stored page and its (decompressed) body.

        Raises:
            PageNotFoundError: No page has this id.
        """
        with self._db.session() as session:
            row = session.get(BronzePageRow, bronze_id)
            if row is None:
                raise PageNotFoundError(bronze_id)
            return _page_ref(row), zlib.decompress(row.body)

    def get_page_body(self, bronze_id: int) -> bytes:
        """The decompressed body of a stored page (see :meth:`get_page`)."""
        with self._db.session() as session:
            body = session.scalar(select(BronzePageRow.body).where(BronzePageRow.id == bronze_id))
        if body is None:
            raise PageNotFoundError(bronze_id)
        return zlib.decompress(body)

    # --- silver records ------------------------------------------------------------------------

    def upsert_records(
        self,
        source: str,
        run_id: str,
        version: int,
        records: list[dict[str, Any]],
        key_field: str | None,
    ) -> tuple[int, int, int]:
        """Merge a run's records into silver and note that the run saw them.

        Keys come from :func:`record_key`; a key repeated within ``records`` keeps the last
        record. A record whose data hash is unchanged only moves ``last_seen`` and ``run_id``.

        Idempotent: retrying the same call adds no row. On a retry, records this run first
        inserted still count as inserted, but ones the first attempt updated count as
        unchanged (their stored data already matches).

        Returns:
            ``(inserted, updated, unchanged)`` counts.
        """
        batch: dict[str, tuple[dict[str, Any], str]] = {}
        for record in records:
            data = json.loads(canonical_json(record))
            batch[record_key(data, key_field)] = (data, _sha256(canonical_json(data)))
        if not batch:
            return 0, 0, 0
        now, keys = utcnow(), list(batch)
        with self._locked(source) as session:
            stored: dict[str, tuple[str, str]] = {}
            for start in range(0, len(keys), KEY_BATCH):
                rows = session.execute(
                    select(
                        SilverRecordRow.key,
                        SilverRecordRow.data_sha256,
                        SilverRecordRow.first_run_id,
                    ).where(
                        SilverRecordRow.source == source,
                        SilverRecordRow.key.in_(keys[start : start + KEY_BATCH]),
                    )
                )
                stored.update({key: (digest, first) for key, digest, first in rows})
            changed, same = [], []
            inserted = updated = 0
            for key, (data, digest) in batch.items():
                row = {
                    "source": source,
                    "key": key,
                    "data": data,
                    "data_sha256": digest,
                    "first_seen": now,
                    "last_seen": now,
                    "scraper_version": version,
                    "run_id": run_id,
                    "first_run_id": run_id,
                }
                previous = stored.get(key)
                if previous is None or previous[1] == run_id:
                    inserted += 1
                elif previous[0] != digest:
                    updated += 1
                if previous is not None and previous[0] == digest:
                    same.append(row)
                else:
                    changed.append(row)
            table, unique = _table(SilverRecordRow), ["source", "key"]
            moved = ["data", "data_sha256", "last_seen", "scraper_version", "run_id"]
            upsert(session, table, changed, unique, update=moved)
            upsert(session, table, same, unique, update=["last_seen", "run_id"])
            seen = [{"source": source, "run_id": run_id, "key": key} for key in keys]
            upsert(session, _table(SilverObservationRow), seen, ["source", "run_id", "key"], [])
        unchanged = len(batch) - inserted - updated
        log.info(
            "source %s run %s: %d inserted, %d updated, %d unchanged",
            source,
            run_id,
            inserted,
            updated,
            unchanged,
        )
        return inserted, updated, unchanged

    def latest_run_id(self, source: str) -> str | None:
        """The newest run that stored records for the source, or None."""
        with self._db.session() as session:
            return session.scalar(
                select(SilverObservationRow.run_id)
                .where(SilverObservationRow.source == source)
                .order_by(SilverObservationRow.id.desc())
                .limit(1)
            )

    def records(
        self, source: str, run_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The records one run saw (the latest run when ``run_id`` is None), in the order
        it saw them, each with its current stored values."""
        run_id = run_id or self.latest_run_id(source)
        if run_id is None:
            return []
        stmt = (
            select(SilverRecordRow.data)
            .join(
                SilverObservationRow,
                and_(
                    SilverObservationRow.source == SilverRecordRow.source,
                    SilverObservationRow.key == SilverRecordRow.key,
                ),
            )
            .where(SilverObservationRow.source == source, SilverObservationRow.run_id == run_id)
            .order_by(SilverObservationRow.id)
            .limit(limit)
        )
        with self._db.session() as session:
            return list(session.scalars(stmt))

    # --- runs and events -----------------------------------------------------------------------

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
            upsert(session, _table(SourceRunRow), [row], ["run_id"])

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
                SourceEvent(source=r.source, at=_utc(r.at), kind=r.kind, detail=r.detail)
                for r in session.scalars(stmt)
            ]
