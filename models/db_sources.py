"""Database schema of sources: scraper versions, bronze pages, silver records, runs, events.

The tables share :class:`models.db.Base` (and so its naming convention and migrations).
Layers follow the medallion convention: *bronze* keeps every distinct page body as fetched,
*silver* keeps one current row per record key plus which runs saw it.

Tables are deliberately not linked by foreign keys: bronze pages and events may be written
for a source while it is being (re)created, and nothing is ever deleted (a removed source
keeps its data), so there is no cascade to enforce.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base

SOURCE_NAME_LENGTH = 63
RUN_ID_LENGTH = 255
RECORD_KEY_LENGTH = 512
"""Longest silver record key; longer natural keys are stored as their SHA-256."""


class SourceRow(Base):
    """A named URL Mendline scrapes (``config`` is the :class:`SourceConfig` dump)."""

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(SOURCE_NAME_LENGTH), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), index=True)
    active_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]


class ScraperVersionRow(Base):
    """One version of a source's scraper: the spec, its rendered module and its report."""

    __tablename__ = "scraper_versions"
    __table_args__ = (
        UniqueConstraint("source", "version", name="uq_scraper_versions_source_version"),
        UniqueConstraint("source", "sha256", name="uq_scraper_versions_source_sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME_LENGTH), index=True)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    parent_sha256: Mapped[str | None] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(20))
    spec: Mapped[dict[str, Any]] = mapped_column()
    module: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[float] = mapped_column(Float)
    report: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime]
    promoted_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]


class BronzePageRow(Base):
    """A fetched page body, zlib-compressed, stored once per distinct (source, URL, body).

    ``url_sha256`` stands in for ``url`` in the unique key: URLs have no length limit, and
    PostgreSQL refuses index entries larger than about 2.7 kB.
    """

    __tablename__ = "bronze_pages"
    __table_args__ = (
        UniqueConstraint("source", "url_sha256", "sha256", name="uq_bronze_pages_source_url_body"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME_LENGTH), index=True)
    url: Mapped[str] = mapped_column(Text)
    url_sha256: Mapped[str] = mapped_column(String(64))
    final_url: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    headers: Mapped[dict[str, Any]] = mapped_column()
    content_type: Mapped[str] = mapped_column(String(255), default="")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    rendered: Mapped[bool] = mapped_column(default=False)
    fetched_at: Mapped[datetime]
    run_id: Mapped[str | None] = mapped_column(String(RUN_ID_LENGTH))


class SilverRecordRow(Base):
    """The current value of one record of a source, identified by its key."""

    __tablename__ = "silver_records"
    __table_args__ = (UniqueConstraint("source", "key", name="uq_silver_records_source_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME_LENGTH))
    key: Mapped[str] = mapped_column(String(RECORD_KEY_LENGTH))
    data: Mapped[dict[str, Any]] = mapped_column()
    data_sha256: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    scraper_version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH))
    first_run_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH))


class SilverObservationRow(Base):
    """That a run saw a record: lists exactly one run's records, in the order it saw them."""

    __tablename__ = "silver_observations"
    __table_args__ = (
        UniqueConstraint("source", "run_id", "key", name="uq_silver_observations_source_run_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME_LENGTH))
    run_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH))
    key: Mapped[str] = mapped_column(String(RECORD_KEY_LENGTH))


class SourceRunRow(Base):
    """One scrape run of a source (``stats`` is the :class:`ScrapeStats` dump)."""

    __tablename__ = "source_runs"

    run_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH), primary_key=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME_LENGTH), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    stats: Mapped[dict[str, Any]] = mapped_column()
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class SourceEventRow(Base):
    """An entry of a source's append-only history (``source history``)."""

    __tablename__ = "source_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(SOURCE_NAME_LENGTH), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict[str, Any]] = mapped_column()
