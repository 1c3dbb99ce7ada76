"""``mendline audit …``: verify and export the tamper-evident audit log.

Reads Mendline's database and the JSONL mirror (``MENDLINE_AUDIT_LOG``, default
``audit.jsonl`` in the data directory). Nothing here needs the Temporal server.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from activities.audit import AuditLog
from activities.storage import Database
from workers.cli.common import console, get_settings, print_json

audit_app = typer.Typer(
    help="The tamper-evident audit log of remediations: verify it, export it.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")]


@contextmanager
def _log() -> Iterator[AuditLog]:
    settings = get_settings()
    db = Database(settings.resolved_database_url)
    try:
        yield AuditLog(db, settings.resolved_audit_log)
    finally:
        db.dispose()


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False) -> None:
    """Check the hash chain in the database and the JSONL mirror, and that they agree.

    Exits 0 when the log is intact; 1 naming every entry that was altered, removed or
    reordered, and where (database entry id, JSONL line).
    """
    with _log() as audit:
        report = audit.verify()
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        if report.intact:
            console.print(f"[green]ok[/] {escape(report.summary())}")
        else:
            console.print(f"[bold red]{escape(report.summary())}[/]")
            table = Table("store", "problem", "entry", "line", "detail")
            for problem in report.problems:
                table.add_row(
                    problem.store,
                    problem.kind,
                    "" if problem.entry_id is None else str(problem.entry_id),
                    "" if problem.line is None else str(problem.line),
                    escape(problem.message),
                )
            console.print(table)
    if not report.intact:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    format: Annotated[
        Literal["jsonl", "csv"], typer.Option("--format", help="jsonl (one entry per line) or csv.")
    ] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
) -> None:
    """Export every entry of the audit log (from the database) in id order."""
    with _log() as audit:
        if output is None:
            for chunk in audit.export(format):
                sys.stdout.write(chunk)
            return
        with output.open("w", encoding="utf-8", newline="") as handle:
            count = 0
            for chunk in audit.export(format):
                handle.write(chunk)
                count += 1
    rows = count - 1 if format == "csv" else count
    console.print(f"wrote {rows} entries to {escape(str(output))}", highlight=False)
