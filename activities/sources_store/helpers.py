"""Hashing, silver keys and row-to-view conversion shared by the parts of the source store."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from activities.sources_store.errors import SourceRecord
from activities.storage import as_utc
from models.db_sources import RECORD_KEY_LENGTH, BronzePageRow, ScraperVersionRow, SourceRow
from models.scraper import ScraperSpec, ValidationReport
from models.sources import PageRef, ScraperVersionInfo, SourceConfig, SourceStatus

KEY_BATCH = 500  # keys per IN (...) lookup, well under every database's parameter limit
HASH_KEY_PREFIX = "sha256:"
PROMOTION_EVENTS = ("version_promoted", "version_rolled_back")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal data gives equal text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(data: str | bytes) -> str:
    """The hex SHA-256 of ``data`` (text as UTF-8)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def record_key(record: dict[str, Any], key_field: str | None) -> str:
    """The silver key of a record.

    The value of ``key_field`` when the record has a non-empty one (non-strings as their
    canonical JSON); otherwise ``"sha256:"`` + the SHA-256 of the record's canonical JSON, so
    a keyless record is identified by its content (a change makes it a new record). A natural
    key longer than the column (512 characters) is stored as ``"sha256:"`` + its hash.
    """
    value = record.get(key_field) if key_field else None
    if is_blank(value):
        return HASH_KEY_PREFIX + sha256_hex(canonical_json(record))
    key = value if isinstance(value, str) else canonical_json(value)
    if len(key) > RECORD_KEY_LENGTH:
        return HASH_KEY_PREFIX + sha256_hex(key)
    return key


def is_blank(value: Any) -> bool:
    """True for None, a whitespace-only string, or an empty list or object."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, list | dict) and not value)


def utc(value: datetime) -> datetime:
    """``value`` made aware: a naive one (as SQLite returns them) is taken as UTC."""
    aware = as_utc(value)
    assert aware is not None  # as_utc only returns None for None
    return aware


def table_of(model: Any) -> Table:
    """The SQLAlchemy ``Table`` of a mapped row class."""
    table: Table = model.__table__
    return table


def source_record(row: SourceRow) -> SourceRecord:
    """The caller's view of a stored source."""
    return SourceRecord(
        name=row.name,
        url=row.url,
        config=SourceConfig.model_validate(row.config),
        status=SourceStatus(row.status),
        active_version=row.active_version,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        removed_at=as_utc(row.removed_at),
    )


def version_info(row: ScraperVersionRow, active_version: int | None) -> ScraperVersionInfo:
    """The caller's view of a stored version (``active`` when it is ``active_version``)."""
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


def page_ref(row: Any) -> PageRef:
    """The caller's view of a stored page (a row or a row of :data:`PAGE_COLUMNS`)."""
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


# Every bronze column but the body, to return a page reference without loading the page.
PAGE_COLUMNS = [c for c in table_of(BronzePageRow).c if c.name != "body"]
