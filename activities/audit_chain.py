"""The audit log's hash chain, pure: hashing entries and checking a stored copy.

An entry's ``sha256`` is the SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8,
``at`` as ISO 8601 UTC with microseconds) of its other fields, ``prev_sha256`` included.
:func:`check_chain` checks one copy (the database rows in id order, or the JSONL lines in
file order) and :func:`compare_copies` the two against each other; together they name each
entry that was altered, removed, reordered or duplicated. :mod:`activities.audit` stores
the log and calls these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

GENESIS = "0" * 64
"""``prev_sha256`` of the first entry."""

HASHED_FIELDS = ("id", "at", "workflow_id", "kind", "actor", "detail", "prev_sha256")

MOVE_SEARCH = 64
"""How far from its stored id :meth:`AuditLog.verify` looks for the id a moved entry had."""

ProblemKind = Literal["altered", "removed", "reordered", "duplicated", "mismatch"]


class AuditProblem(BaseModel):
    """One finding of :meth:`AuditLog.verify`.

    Attributes:
        store: ``database`` or ``jsonl`` (``both`` when the two copies disagree).
        kind: What happened to the entry.
        entry_id: The entry concerned (its original id for a moved entry).
        line: The JSONL line, for findings in the mirror.
        message: One sentence saying what is wrong and where.
    """

    store: Literal["database", "jsonl", "both"]
    kind: ProblemKind
    entry_id: int | None = None
    line: int | None = None
    message: str


class VerifyReport(BaseModel):
    """The result of :meth:`AuditLog.verify`."""

    intact: bool
    entries: int = 0
    """Entries in the database."""
    mirror_entries: int = 0
    """Entries (lines) in the JSONL mirror."""
    head_sha256: str = GENESIS
    """The database chain's last hash (what an external witness would keep)."""
    jsonl_path: str = ""
    problems: list[AuditProblem] = Field(default_factory=list)

    def summary(self) -> str:
        """One line: intact with the counts, or how many problems were found."""
        if self.intact:
            return (
                f"audit log intact: {self.entries} entries in the database, "
                f"{self.mirror_entries} in {self.jsonl_path}, head {self.head_sha256[:16]}…"
            )
        count = len(self.problems)
        return f"audit log TAMPERED: {count} problem{'s' if count != 1 else ''}"


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text, no NaN: the one serialisation hashes are over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def stamp(at: datetime) -> str:
    """An instant as hashed: ISO 8601 in UTC with microseconds (what both stores keep)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_sha256(fields: dict[str, Any]) -> str:
    """The SHA-256 of an entry's hashed fields (``at`` as ISO text)."""
    body = {name: fields[name] for name in HASHED_FIELDS}
    if isinstance(body["at"], datetime):
        body["at"] = stamp(body["at"])
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


Stored = Sequence[tuple[dict[str, Any], int | None]]
"""Entries as stored, in storage order: their fields and, for the JSONL, their line."""


def _where(store: str, entry_id: int | None, line: int | None) -> str:
    if store == "jsonl":
        return f"JSONL line {line}" + (f" (entry {entry_id})" if entry_id is not None else "")
    return f"database entry {entry_id}"


def _original_id(fields: dict[str, Any], near: Sequence[int]) -> int | None:
    """The id under which an entry's fields hash to its stored hash, if not its own."""
    for candidate in near:
        if (
            candidate != fields["id"]
            and entry_sha256({**fields, "id": candidate}) == fields["sha256"]
        ):
            return candidate
    return None


def check_chain(stored: Stored, store: Literal["database", "jsonl"]) -> list[AuditProblem]:
    """Every altered, removed, reordered or duplicated entry of one copy of the log."""
    problems: list[AuditProblem] = []
    ids = [fields["id"] for fields, _ in stored]
    highest = max(ids, default=0)
    # An entry's logical id: its own when its hash holds, the id it was hashed under when it
    # was moved, None when its content was changed.
    logical: list[int | None] = []
    for fields, line in stored:
        entry_id = fields["id"]
        if entry_sha256(fields) == fields["sha256"]:
            logical.append(entry_id)
            continue
        near = range(max(1, entry_id - MOVE_SEARCH), entry_id + MOVE_SEARCH + 1)
        original = _original_id(fields, near)
        if original is not None:
            logical.append(original)
            problems.append(
                AuditProblem(
                    store=store,
                    kind="reordered",
                    entry_id=original,
                    line=line,
                    message=f"{_where(store, entry_id, line)} is entry {original} moved "
                    f"(its hash only holds under id {original})",
                )
            )
        else:
            logical.append(None)
            problems.append(
                AuditProblem(
                    store=store,
                    kind="altered",
                    entry_id=entry_id,
                    line=line,
                    message=f"{_where(store, entry_id, line)} was altered: its content does not "
                    "match its sha256",
                )
            )
    # Order: in the JSONL, lines must follow the ids (the database is read in id order, so
    # a move there shows as a hash that only holds under another id, above).
    if store == "jsonl":
        seen_max = 0
        for (_, line), entry_id in zip(stored, logical, strict=True):
            if entry_id is None:
                continue
            if entry_id < seen_max:
                problems.append(
                    AuditProblem(
                        store=store,
                        kind="reordered",
                        entry_id=entry_id,
                        line=line,
                        message=f"JSONL line {line} holds entry {entry_id} after entry "
                        f"{seen_max}: out of order",
                    )
                )
            seen_max = max(seen_max, entry_id)
    # Duplicates and gaps, by logical id (altered entries keep their stored id).
    by_id: dict[int, list[tuple[dict[str, Any], int | None]]] = {}
    for (fields, line), entry_id in zip(stored, logical, strict=True):
        by_id.setdefault(entry_id if entry_id is not None else fields["id"], []).append(
            (fields, line)
        )
    for entry_id, copies in sorted(by_id.items()):
        if len(copies) > 1:
            places = ", ".join(_where(store, c[0]["id"], c[1]) for c in copies)
            problems.append(
                AuditProblem(
                    store=store,
                    kind="duplicated",
                    entry_id=entry_id,
                    line=copies[1][1],
                    message=f"entry {entry_id} appears {len(copies)} times ({places})",
                )
            )
    highest = max([highest, *by_id])
    for missing in range(1, highest + 1):
        if missing not in by_id:
            after = next((by_id[i][0] for i in range(missing - 1, 0, -1) if i in by_id), None)
            where = f" (after line {after[1]})" if store == "jsonl" and after and after[1] else ""
            problems.append(
                AuditProblem(
                    store=store,
                    kind="removed",
                    entry_id=missing,
                    line=after[1] + 1 if store == "jsonl" and after and after[1] else None,
                    message=f"entry {missing} was removed from the {_store_name(store)}{where}",
                )
            )
    # Links: each entry must name its predecessor's hash. A link that breaks between two
    # intact, adjacent entries means the earlier one was rewritten with a fresh hash.
    intact = {
        entry_id: by_id[entry_id][0][0]
        for entry_id in by_id
        if len(by_id[entry_id]) == 1 and entry_id in logical
    }
    for entry_id, fields in sorted(intact.items()):
        if entry_id == 1 and fields["prev_sha256"] != GENESIS:
            problems.append(
                AuditProblem(
                    store=store,
                    kind="removed",
                    entry_id=1,
                    line=by_id[1][0][1],
                    message=f"entry 1 in the {_store_name(store)} does not start the chain: "
                    "entries before it were removed",
                )
            )
        before = intact.get(entry_id - 1)
        if before is not None and fields["prev_sha256"] != before["sha256"]:
            problems.append(
                AuditProblem(
                    store=store,
                    kind="altered",
                    entry_id=entry_id - 1,
                    line=by_id[entry_id - 1][0][1],
                    message=f"{_where(store, entry_id - 1, by_id[entry_id - 1][0][1])} was "
                    f"rewritten with a recomputed hash: entry {entry_id} links to another "
                    f"predecessor ({fields['prev_sha256'][:16]}…)",
                )
            )
    return problems


def merge_unreadable(
    unreadable: list[AuditProblem], chain: list[AuditProblem]
) -> list[AuditProblem]:
    """An unreadable line where the chain misses an entry *is* that entry, altered: report
    it once, with its id, instead of as an unreadable line and a removed entry."""
    garbled = {p.line: p for p in unreadable}
    kept: list[AuditProblem] = []
    for problem in chain:
        line = garbled.get(problem.line) if problem.kind == "removed" else None
        if line is not None and line.entry_id is None:
            line.entry_id = problem.entry_id
            line.message = line.message.replace(
                f"line {line.line} ", f"line {line.line} (entry {problem.entry_id}) ", 1
            )
        else:
            kept.append(problem)
    return sorted([*unreadable, *kept], key=lambda p: (p.line or 0, p.entry_id or 0))


def _store_name(store: str) -> str:
    return "JSONL mirror" if store == "jsonl" else "database"


def compare_copies(
    database: Stored, mirror: Stored, found: list[AuditProblem]
) -> list[AuditProblem]:
    """Entries the two copies disagree on that neither copy's own check pinpointed."""
    flagged = {(p.store, p.entry_id) for p in found}
    db = {fields["id"]: fields for fields, _ in database}
    mirrored = {fields["id"]: (fields, line) for fields, line in mirror}
    problems: list[AuditProblem] = []
    for entry_id in sorted(set(db) | set(mirrored)):
        if ("database", entry_id) in flagged or ("jsonl", entry_id) in flagged:
            continue
        if entry_id not in mirrored:
            problems.append(
                AuditProblem(
                    store="jsonl",
                    kind="removed",
                    entry_id=entry_id,
                    message=f"entry {entry_id} is in the database but not in the JSONL mirror "
                    "(the mirror was truncated, or a worker died before mirroring it: the next "
                    "append copies it)",
                )
            )
        elif entry_id not in db:
            problems.append(
                AuditProblem(
                    store="database",
                    kind="removed",
                    entry_id=entry_id,
                    line=mirrored[entry_id][1],
                    message=f"entry {entry_id} was removed from the database (the JSONL "
                    f"mirror still has it, line {mirrored[entry_id][1]})",
                )
            )
        elif db[entry_id]["sha256"] != mirrored[entry_id][0]["sha256"]:
            problems.append(
                AuditProblem(
                    store="both",
                    kind="mismatch",
                    entry_id=entry_id,
                    line=mirrored[entry_id][1],
                    message=f"entry {entry_id} differs between the database and JSONL line "
                    f"{mirrored[entry_id][1]}: one copy was rewritten with a recomputed hash",
                )
            )
    return problems
