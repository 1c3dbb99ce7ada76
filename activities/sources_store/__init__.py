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

from activities.sources_store.errors import (
    PageNotFoundError,
    SourceEvent,
    SourceExistsError,
    SourceNotFoundError,
    SourceRecord,
    SourceStoreError,
    VersionNotFoundError,
)
from activities.sources_store.helpers import (
    HASH_KEY_PREFIX,
    KEY_BATCH,
    PROMOTION_EVENTS,
    canonical_json,
    record_key,
)
from activities.sources_store.history import HistoryMixin
from activities.sources_store.locking import SOURCE_LOCK_CLASS
from activities.sources_store.pages import PagesMixin
from activities.sources_store.silver import SilverMixin
from activities.sources_store.sources import SourcesMixin
from activities.sources_store.versions import VersionsMixin

__all__ = [
    "HASH_KEY_PREFIX",
    "KEY_BATCH",
    "PROMOTION_EVENTS",
    "SOURCE_LOCK_CLASS",
    "PageNotFoundError",
    "SourceEvent",
    "SourceExistsError",
    "SourceNotFoundError",
    "SourceRecord",
    "SourceStore",
    "SourceStoreError",
    "VersionNotFoundError",
    "canonical_json",
    "record_key",
]


class SourceStore(SourcesMixin, VersionsMixin, PagesMixin, SilverMixin, HistoryMixin):
    """Sources, scraper versions, bronze pages, silver records, runs and events.

    Args:
        db: Mendline's database, migrated (``Database(url)`` migrates on open).
    """
