"""The tamper-evident audit log: a hash chain in the database, mirrored to a JSONL file.

Every decision, action and outcome of a remediation is appended as an
:class:`~models.remediation.AuditEntry`. An entry's ``sha256`` is the SHA-256 of the
canonical JSON (sorted keys, no spaces, UTF-8) of all its other fields, ``prev_sha256``
included, and ``prev_sha256`` is the previous entry's ``sha256`` (64 zeros for the first).
Ids count 1, 2, 3… without gaps. So:

* changing an entry breaks its own hash (**altered**);
* deleting one leaves a gap in the ids and a link that no longer matches (**removed**);
* moving one puts it where its id (part of its hash) or its position says it does not
  belong (**reordered**);
* rewriting an entry *and* recomputing its hash breaks the next entry's link, and the
  other copy (database or JSONL) still holds the original (**mismatch**).

:meth:`AuditLog.verify` checks the database and the JSONL mirror each on its own and
against each other, and names every entry concerned.

Appends are serialised (a transaction-scoped PostgreSQL advisory lock; ``BEGIN IMMEDIATE``
on SQLite) and idempotent by ``dedupe_key``: an activity retried after a crash appends
nothing twice. The mirror is written after the database commits, under a file lock, by
copying every committed entry newer than the file's last line, so the file stays in id
order even when several workers append at once, and a worker that died between the commit
and the write is caught up by the next append.

Errors::

    AuditError
    └── AuditExportError   an unknown export format
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any, BinaryIO, Literal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from activities.audit_chain import (
    GENESIS,
    HASHED_FIELDS,
    AuditProblem,
    VerifyReport,
    canonical_json,
    check_chain,
    compare_copies,
    entry_sha256,
    merge_unreadable,
    stamp,
)
from activities.storage import Database, as_utc, utcnow
from models.db_remediation import AuditLogRow
from models.remediation import AuditEntry, AuditRecord

log = logging.getLogger(__name__)

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditExportError",
    "AuditLog",
    "AuditProblem",
    "VerifyReport",
    "entry_line",
    "entry_sha256",
]

AUDIT_LOCK_ID = 0x41554454  # "AUDT": PostgreSQL advisory lock key of audit appends

ExportFormat = Literal["jsonl", "csv"]
CSV_COLUMNS = ("id", "at", "workflow_id", "kind", "actor", "detail", "prev_sha256", "sha256")

TAIL_BYTES = 64 * 1024
"""How much of the mirror's end an append reads to find its last entry."""


class AuditError(Exception):
    """Base of the audit log's errors."""


class AuditExportError(AuditError, ValueError):
    """An unknown export format."""


def _entry(row: AuditLogRow) -> AuditEntry:
    at = as_utc(row.at)
    assert at is not None
    return AuditEntry(
        id=row.id,
        at=at,
        workflow_id=row.workflow_id,
        kind=row.kind,
        actor=row.actor,
        detail=row.detail,
        prev_sha256=row.prev_sha256,
        sha256=row.sha256,
    )


def entry_line(entry: AuditEntry) -> str:
    """An entry as one JSONL line (canonical JSON, ``at`` as hashed)."""
    body = entry.model_dump(mode="json")
    body["at"] = stamp(entry.at)
    return canonical_json(body)


class AuditLog:
    """The audit log in Mendline's database and its JSONL mirror.

    Args:
        database: Mendline's database, migrated.
        jsonl_path: The mirror file (``MENDLINE_AUDIT_LOG``; created on first append).
    """

    def __init__(self, database: Database, jsonl_path: Path | str) -> None:
        self.database = database
        self.jsonl_path = Path(jsonl_path)

    # --- appending ----------------------------------------------------------------------------

    def append(self, record: AuditRecord) -> AuditEntry:
        """Append an entry, or return the one already appended under ``record.dedupe_key``.

        Raises:
            ValueError: ``record.detail`` is not JSON (NaN, infinity, objects JSON cannot hold).
        """
        try:
            detail = json.loads(canonical_json(record.detail))
        except TypeError as exc:
            raise ValueError(f"audit detail must be JSON: {exc}") from exc
        with self._locked() as session:
            existing = session.scalar(
                select(AuditLogRow).where(AuditLogRow.dedupe_key == record.dedupe_key)
            )
            if existing is not None:
                entry = _entry(existing)
            else:
                last = session.scalar(select(AuditLogRow).order_by(AuditLogRow.id.desc()).limit(1))
                fields: dict[str, Any] = {
                    "id": last.id + 1 if last else 1,
                    # Microseconds are what both databases and the JSONL keep exactly.
                    "at": utcnow().astimezone(UTC),
                    "workflow_id": record.workflow_id,
                    "kind": record.kind,
                    "actor": record.actor,
                    "detail": detail,
                    "prev_sha256": last.sha256 if last else GENESIS,
                }
                fields["sha256"] = entry_sha256(fields)
                row = AuditLogRow(**fields, dedupe_key=record.dedupe_key)
                session.add(row)
                entry = AuditEntry.model_validate(fields)
        self.sync_mirror()
        return entry

    @contextmanager
    def _locked(self) -> Iterator[Session]:
        """A transaction holding the audit log's write lock until it ends."""
        with self.database.session() as session:
            conn = session.connection()
            if conn.dialect.name == "sqlite":
                # Take the write lock before reading the chain's head (see
                # activities/sources_store/locking.py for why pysqlite needs this).
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_ID})
            yield session

    def sync_mirror(self) -> int:
        """Append to the JSONL every committed entry newer than its last line.

        Returns:
            How many lines were written.
        """
        self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        with self.jsonl_path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                last_id = _last_id(handle)
                with self.database.session() as session:
                    rows = session.scalars(
                        select(AuditLogRow).where(AuditLogRow.id > last_id).order_by(AuditLogRow.id)
                    ).all()
                    lines = [(entry_line(_entry(row)) + "\n").encode() for row in rows]
                if last_id == 0 and len(lines) > 1:
                    log.warning(
                        "audit mirror %s was empty or missing: rewriting %d entries from the "
                        "database (verify before trusting them)",
                        self.jsonl_path,
                        len(lines),
                    )
                handle.seek(0, io.SEEK_END)
                handle.writelines(lines)
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return len(lines)

    # --- reading ------------------------------------------------------------------------------

    def entries(
        self, workflow_id: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[AuditEntry]:
        """Entries in id order, optionally of one workflow, after an id, at most ``limit``."""
        query = select(AuditLogRow).where(AuditLogRow.id > after).order_by(AuditLogRow.id)
        if workflow_id is not None:
            query = query.where(AuditLogRow.workflow_id == workflow_id)
        if limit is not None:
            query = query.limit(limit)
        with self.database.session() as session:
            return [_entry(row) for row in session.scalars(query)]

    def export(self, format: ExportFormat = "jsonl") -> Iterator[str]:
        """The database's entries as JSONL lines or CSV rows (each ending in a newline).

        Raises:
            AuditExportError: ``format`` is neither ``jsonl`` nor ``csv``.
        """
        if format not in ("jsonl", "csv"):
            raise AuditExportError(f"unknown export format {format!r} (use jsonl or csv)")
        if format == "csv":
            yield _csv_row(CSV_COLUMNS)
        after = 0
        while True:
            batch = self.entries(after=after, limit=1000)
            if not batch:
                return
            for entry in batch:
                if format == "jsonl":
                    yield entry_line(entry) + "\n"
                else:
                    body = entry.model_dump(mode="json")
                    body["at"] = stamp(entry.at)
                    body["detail"] = canonical_json(entry.detail)
                    yield _csv_row([body[c] for c in CSV_COLUMNS])
            after = batch[-1].id

    # --- verifying ----------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check the database chain, the JSONL chain, and that the two agree.

        Never raises for a damaged log: every finding is in the report.
        """
        with self.database.session() as session:
            rows = session.scalars(select(AuditLogRow).order_by(AuditLogRow.id)).all()
            stored = [(_row_fields(row), None) for row in rows]
        problems = check_chain(stored, "database")
        mirrored, unreadable = self._read_mirror()
        problems += merge_unreadable(unreadable, check_chain(mirrored, "jsonl"))
        problems += compare_copies(stored, mirrored, problems)
        return VerifyReport(
            intact=not problems,
            entries=len(stored),
            mirror_entries=len(mirrored) + len(unreadable),
            head_sha256=stored[-1][0]["sha256"] if stored else GENESIS,
            jsonl_path=str(self.jsonl_path),
            problems=problems,
        )

    def _read_mirror(self) -> tuple[list[tuple[dict[str, Any], int | None]], list[AuditProblem]]:
        entries: list[tuple[dict[str, Any], int | None]] = []
        problems: list[AuditProblem] = []
        if not self.jsonl_path.exists():
            return entries, problems
        with self.jsonl_path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                    fields = {name: value[name] for name in (*HASHED_FIELDS, "sha256")}
                    if not isinstance(fields["id"], int):
                        raise TypeError("id is not an integer")
                except (ValueError, KeyError, TypeError) as exc:
                    problems.append(
                        AuditProblem(
                            store="jsonl",
                            kind="altered",
                            line=number,
                            message=f"line {number} is not an audit entry ({exc})",
                        )
                    )
                    continue
                entries.append((fields, number))
        return entries, problems


def _row_fields(row: AuditLogRow) -> dict[str, Any]:
    at = as_utc(row.at)
    assert at is not None
    return {
        "id": row.id,
        "at": stamp(at),
        "workflow_id": row.workflow_id,
        "kind": row.kind,
        "actor": row.actor,
        "detail": row.detail,
        "prev_sha256": row.prev_sha256,
        "sha256": row.sha256,
    }


def _last_id(handle: BinaryIO) -> int:
    """The id on the file's last line; the highest id on any line when that one is damaged.

    Reads only the tail in the usual case, so appending stays cheap on a long log.
    """
    size = handle.seek(0, io.SEEK_END)
    handle.seek(max(0, size - TAIL_BYTES))
    tail = handle.read().splitlines()
    # The first line of a partial tail may be cut; it is only used when it is the whole file.
    complete = tail if size <= TAIL_BYTES else tail[1:]
    for line in reversed(complete):
        if not line.strip():
            continue
        entry_id = _line_id(line)
        if entry_id is not None:
            return entry_id
        break
    if size == 0:
        return 0
    handle.seek(0)
    return max((i for i in map(_line_id, handle) if i is not None), default=0)


def _line_id(line: bytes) -> int | None:
    try:
        value = json.loads(line)["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _csv_row(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()
