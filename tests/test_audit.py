"""The tamper-evident audit log on SQLite and PostgreSQL: the hash chain and its JSONL
mirror, idempotent and serialised appends, export, and verification that names exactly the
entry altered, removed or reordered — in the database rows and in the JSONL lines — plus
``mendline audit verify|export``."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from activities.audit import GENESIS, AuditLog, AuditProblem, entry_line, entry_sha256
from activities.storage import Database
from models.remediation import AuditRecord
from workers.cli.main import app

WF = "remediation/pipeline/orders/abc/extract"


@pytest.fixture
def audit(db: Database, tmp_path: Path) -> AuditLog:
    return AuditLog(db, tmp_path / "data" / "audit.jsonl")


def record(n: int, kind: str = "plan", workflow_id: str = WF, **detail: object) -> AuditRecord:
    return AuditRecord(
        workflow_id=workflow_id,
        kind=kind,
        actor="heuristic" if kind == "plan" else "policy",
        detail={"n": n, "confidence": 0.42, "reasons": ["ünïcode ✓"], **detail},
        dedupe_key=f"{workflow_id}#{n}#{kind}",
    )


def fill(audit: AuditLog, count: int = 6) -> None:
    for n in range(1, count + 1):
        audit.append(record(n, "plan" if n % 2 else "verdict"))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def problems(audit: AuditLog) -> list[tuple[str, str, int | None, int | None]]:
    report = audit.verify()
    assert report.intact == (not report.problems)
    return [(p.store, p.kind, p.entry_id, p.line) for p in report.problems]


def execute(db: Database, sql: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql), params)


# --- appending --------------------------------------------------------------------------------


def test_entries_form_a_hash_chain_mirrored_line_by_line(audit: AuditLog) -> None:
    first = audit.append(record(1))
    second = audit.append(record(2, "verdict", verdict="needs_approval"))
    assert (first.id, second.id) == (1, 2)
    assert first.prev_sha256 == GENESIS
    assert second.prev_sha256 == first.sha256
    for entry in (first, second):
        fields = entry.model_dump()
        assert entry.sha256 == entry_sha256(fields)
    assert second.detail == {
        "n": 2,
        "confidence": 0.42,
        "reasons": ["ünïcode ✓"],
        "verdict": "needs_approval",
    }
    assert lines(audit.jsonl_path) == [entry_line(first), entry_line(second)]
    assert json.loads(lines(audit.jsonl_path)[1])["prev_sha256"] == first.sha256
    assert audit.entries() == [first, second]
    report = audit.verify()
    assert report.intact, report.problems
    assert (report.entries, report.mirror_entries, report.head_sha256) == (2, 2, second.sha256)
    assert report.summary().startswith("audit log intact: 2 entries in the database, 2 in ")


def test_append_is_idempotent_by_dedupe_key(audit: AuditLog) -> None:
    first = audit.append(record(1))
    again = audit.append(record(1, extra="ignored: the first append stands"))
    assert again == first
    assert audit.append(record(2)).id == 2
    assert [e.id for e in audit.entries()] == [1, 2]
    assert len(lines(audit.jsonl_path)) == 2


def test_non_json_detail_is_refused(audit: AuditLog) -> None:
    with pytest.raises(ValueError):
        audit.append(record(1, score=float("nan")))
    assert audit.entries() == []


def test_concurrent_appends_keep_one_gapless_chain_in_order(db: Database, tmp_path: Path) -> None:
    """Eight threads, each with its own AuditLog on the shared database and file, append at
    once: the lock serialises them and the mirror stays in id order."""
    path = tmp_path / "data" / "audit.jsonl"
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        log = AuditLog(db, path)
        try:
            for n in range(10):
                log.append(record(n, workflow_id=f"wf-{w}"))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    log = AuditLog(db, path)
    assert [e.id for e in log.entries()] == list(range(1, 81))
    assert [json.loads(line)["id"] for line in lines(path)] == list(range(1, 81))
    assert log.verify().intact


def test_a_mirror_left_behind_is_caught_up_by_the_next_append(db: Database, tmp_path: Path) -> None:
    """Two workers with their own mirror files (as on two machines): each file gets every
    entry, in order, once its worker appends again; until then verify says which entries
    the file lacks."""
    a = AuditLog(db, tmp_path / "a" / "audit.jsonl")
    b = AuditLog(db, tmp_path / "b" / "audit.jsonl")
    a.append(record(1))
    b.append(record(2))
    a.append(record(3))
    assert problems(b) == [("jsonl", "removed", 3, None)]
    assert "the next append copies it" in b.verify().problems[0].message
    b.append(record(4))
    assert lines(a.jsonl_path)[:3] == lines(b.jsonl_path)[:3]
    assert [json.loads(line)["id"] for line in lines(b.jsonl_path)] == [1, 2, 3, 4]
    assert problems(a) == [("jsonl", "removed", 4, None)]
    assert a.sync_mirror() == 1
    assert a.verify().intact and b.verify().intact


def test_export_jsonl_and_csv(audit: AuditLog) -> None:
    fill(audit, 3)
    exported = "".join(audit.export("jsonl"))
    assert exported.splitlines() == lines(audit.jsonl_path)
    rows = list(csv.DictReader(io.StringIO("".join(audit.export("csv")))))
    assert [row["id"] for row in rows] == ["1", "2", "3"]
    assert json.loads(rows[0]["detail"]) == audit.entries()[0].detail
    assert rows[2]["prev_sha256"] == rows[1]["sha256"]
    with pytest.raises(ValueError, match="unknown export format 'xml'"):
        list(audit.export("xml"))  # type: ignore[arg-type]


# --- tampering with the database --------------------------------------------------------------


def test_an_altered_row_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit)
    execute(db, "UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
    assert problems(audit) == [("database", "altered", 3, None)]
    report = audit.verify()
    assert not report.intact
    assert report.problems[0].message == (
        "database entry 3 was altered: its content does not match its sha256"
    )


def test_an_altered_detail_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit)
    entry = audit.entries()[4]
    changed = json.dumps({**entry.detail, "confidence": 0.99})
    execute(db, "UPDATE audit_log SET detail = :d WHERE id = 5", d=changed)
    assert problems(audit) == [("database", "altered", 5, None)]


def test_a_removed_row_is_named(audit: AuditLog, db: Database) -> None:
    fill(audit)
    execute(db, "DELETE FROM audit_log WHERE id = 4")
    assert problems(audit) == [("database", "removed", 4, None)]
    assert audit.verify().problems[0].message == "entry 4 was removed from the database"


def test_a_removed_last_row_is_named_thanks_to_the_mirror(audit: AuditLog, db: Database) -> None:
    fill(audit)
    execute(db, "DELETE FROM audit_log WHERE id = 6")
    assert problems(audit) == [("database", "removed", 6, 6)]
    assert "the JSONL mirror still has it, line 6" in audit.verify().problems[0].message


def test_reordered_rows_are_named(audit: AuditLog, db: Database) -> None:
    fill(audit)
    execute(db, "UPDATE audit_log SET id = -1, dedupe_key = 'tmp' WHERE id = 3")
    execute(db, "UPDATE audit_log SET id = 3 WHERE id = 4")
    execute(db, "UPDATE audit_log SET id = 4, dedupe_key = :k WHERE id = -1", k=f"{WF}#3#plan")
    assert problems(audit) == [
        ("database", "reordered", 4, None),
        ("database", "reordered", 3, None),
    ]
    assert [p.message for p in audit.verify().problems] == [
        "database entry 3 is entry 4 moved (its hash only holds under id 4)",
        "database entry 4 is entry 3 moved (its hash only holds under id 3)",
    ]


def test_a_rewritten_row_with_a_recomputed_hash_is_still_caught(
    audit: AuditLog, db: Database
) -> None:
    """Someone who knows the scheme changes entry 2 and recomputes its hash: the next
    entry's link and the JSONL copy still give it away."""
    fill(audit)
    entry = audit.entries()[1]
    forged = entry.model_dump()
    forged["actor"] = "mallory"
    sha = entry_sha256(forged)
    execute(db, "UPDATE audit_log SET actor = 'mallory', sha256 = :s WHERE id = 2", s=sha)
    found = audit.verify().problems
    assert [(p.store, p.kind, p.entry_id) for p in found] == [("database", "altered", 2)]
    assert "rewritten with a recomputed hash" in found[0].message


# --- tampering with the JSONL mirror ----------------------------------------------------------


def rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in new_lines), encoding="utf-8")


def test_an_altered_line_is_named(audit: AuditLog) -> None:
    fill(audit)
    content = lines(audit.jsonl_path)
    content[2] = content[2].replace('"actor":"heuristic"', '"actor":"mallory"')
    rewrite(audit.jsonl_path, content)
    assert problems(audit) == [("jsonl", "altered", 3, 3)]
    assert audit.verify().problems[0].message == (
        "JSONL line 3 (entry 3) was altered: its content does not match its sha256"
    )


def test_a_garbled_line_is_named(audit: AuditLog) -> None:
    fill(audit)
    content = lines(audit.jsonl_path)
    content[1] = content[1][:40]
    rewrite(audit.jsonl_path, content)
    found = audit.verify().problems
    assert [(p.store, p.kind, p.entry_id, p.line) for p in found] == [("jsonl", "altered", 2, 2)]
    assert found[0].message.startswith("line 2 (entry 2) is not an audit entry")


def test_a_removed_line_is_named(audit: AuditLog) -> None:
    fill(audit)
    content = lines(audit.jsonl_path)
    del content[3]
    rewrite(audit.jsonl_path, content)
    assert problems(audit) == [("jsonl", "removed", 4, 4)]
    assert audit.verify().problems[0].message == (
        "entry 4 was removed from the JSONL mirror (after line 3)"
    )


def test_reordered_lines_are_named(audit: AuditLog) -> None:
    fill(audit)
    content = lines(audit.jsonl_path)
    content[2], content[3] = content[3], content[2]
    rewrite(audit.jsonl_path, content)
    assert problems(audit) == [("jsonl", "reordered", 3, 4)]
    assert audit.verify().problems[0].message == (
        "JSONL line 4 holds entry 3 after entry 4: out of order"
    )


def test_a_duplicated_line_is_named(audit: AuditLog) -> None:
    fill(audit)
    content = lines(audit.jsonl_path)
    content.insert(5, content[1])
    rewrite(audit.jsonl_path, content)
    kinds = {(p.kind, p.entry_id) for p in audit.verify().problems}
    assert ("duplicated", 2) in kinds


def test_the_two_copies_disagreeing_is_named(audit: AuditLog) -> None:
    """A JSONL entry rewritten with a recomputed hash is self-consistent, but no longer the
    database's entry, and the next line no longer links to it."""
    fill(audit)
    content = lines(audit.jsonl_path)
    forged = json.loads(content[5])
    forged["actor"] = "mallory"
    forged["sha256"] = entry_sha256(forged)
    content[5] = json.dumps(forged)
    rewrite(audit.jsonl_path, content)
    assert problems(audit) == [("both", "mismatch", 6, 6)]


# --- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> AuditLog:
    for name in list(os.environ):
        if name.startswith("MENDLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MENDLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MENDLINE_DATABASE_URL", db_url)
    monkeypatch.setenv("MENDLINE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("COLUMNS", "250")
    return AuditLog(Database(db_url), tmp_path / "data" / "audit.jsonl")


def mendline(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_cli_verify_and_export(cli_env: AuditLog, tmp_path: Path) -> None:
    audit = cli_env
    fill(audit, 4)
    result = mendline("audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok audit log intact: 4 entries in the database, 4 in ")

    exported = mendline("audit", "export", "--format", "jsonl")
    assert exported.exit_code == 0
    assert exported.stdout.splitlines() == lines(audit.jsonl_path)
    out = tmp_path / "audit.csv"
    saved = mendline("audit", "export", "--format", "csv", "--output", str(out))
    assert saved.exit_code == 0, saved.output
    assert saved.stdout.strip() == f"wrote 4 entries to {out}"
    with out.open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4

    execute(audit.database, "DELETE FROM audit_log WHERE id = 2")
    content = lines(audit.jsonl_path)
    content[2] = content[2].replace('"kind":"plan"', '"kind":"outcome"')
    rewrite(audit.jsonl_path, content)
    tampered = mendline("audit", "verify", "--json")
    assert tampered.exit_code == 1
    report = json.loads(tampered.stdout)
    assert report["intact"] is False
    assert [AuditProblem.model_validate(p).entry_id for p in report["problems"]] == [2, 3]
    shown = mendline("audit", "verify")
    assert shown.exit_code == 1
    assert "audit log TAMPERED: 2 problems" in shown.stdout
    assert "entry 2 was removed from the database" in shown.stdout
    assert "JSONL line 3 (entry 3) was altered" in shown.stdout
    audit.database.dispose()


def test_cli_rejects_an_unknown_format(cli_env: AuditLog) -> None:
    result = mendline("audit", "export", "--format", "xml")
    assert result.exit_code == 2
    cli_env.database.dispose()
