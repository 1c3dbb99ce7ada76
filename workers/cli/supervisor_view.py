"""How the CLI shows self-repair: the ``source status`` table and details, progress lines of
a followed run or repair, and one-line summaries of a source's history events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from activities.sources_store import SourceEvent, SourceRecord
from models.health import HealthState, HealthTransition
from models.sources import ScrapeStats
from models.supervisor import RepairReport, RunDigest, SupervisorView
from workers.cli.common import console

HEALTH_STYLE = {
    "ACTIVE": "green",
    "DEGRADED": "yellow",
    "QUARANTINED": "red",
    "DEAD": "bold red",
}


def span(seconds: float) -> str:
    """A duration the way people say it: ``45s``, ``12m``, ``1h30m``, ``2d3h``."""
    total = round(abs(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m"
    if total < 86400:
        hours, minutes = divmod(total // 60, 60)
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(total // 3600, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def plural(count: int, noun: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def ago(at: datetime | None, now: datetime) -> str:
    """``12s ago`` (``-`` when there is no time)."""
    return f"{span((now - at).total_seconds())} ago" if at else "-"


def stamp(at: datetime) -> str:
    """A UTC timestamp to the second: ``2026-05-01 12:00:03Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def styled(state: HealthState | str) -> str:
    """A health state in its colour (rich markup)."""
    text = state.value if isinstance(state, HealthState) else state
    style = HEALTH_STYLE.get(text)
    return f"[{style}]{text}[/]" if style else escape(text)


def print_run(run: RunDigest) -> None:
    """One line per run, then its reasons."""
    version = f"v{run.version}" if run.version is not None else "no version"
    held = ", held back from silver" if run.held else ""
    console.print(
        f"run {run.cycle} ({run.trigger}) with {version}: [bold]{run.verdict}[/], "
        f"{run.records} records, {run.inserted} new{held}"
    )
    for reason in run.reasons:
        console.print(f"  - {escape(reason)}")


def print_transition(t: HealthTransition) -> None:
    """One line per health transition."""
    console.print(f"health {t.from_state.value} → {styled(t.to_state)}: {escape(t.reason)}")


def print_repair(report: RepairReport, *, notes: bool = False) -> None:
    """One line per finished repair, then what it changed (and what it tried)."""
    colour = {"promoted": "green", "not_needed": "green", "rolled_back": "yellow"}.get(
        report.outcome, "red"
    )
    versions = []
    if report.candidate is not None:
        versions.append(f"candidate v{report.candidate}")
    if report.active_version is not None:
        versions.append(f"v{report.active_version} active")
    if report.confidence is not None:
        versions.append(f"confidence {report.confidence:.2f}")
    extra = f" ({', '.join(versions)})" if versions else ""
    console.print(
        f"repair {report.number} [{colour}]{report.outcome}[/]{extra}: {escape(report.reason)}"
    )
    if report.lost_fields:
        console.print(f"  lost fields: {', '.join(report.lost_fields)}")
    if report.approved_by:
        console.print(f"  approved by {escape(report.approved_by)}")
    for note in report.notes if notes else []:
        console.print(f"  - {escape(note)}")


def health_line(view: SupervisorView) -> str:
    """One line: ``books ACTIVE v2 · every 1h · next run in 59m``."""
    parts = [f"[bold]{view.source}[/] {styled(view.health)}"]
    if view.active_version is not None:
        parts[0] += f" v{view.active_version}"
    parts.append(f"every {span(view.interval_seconds)}")
    parts.append(f"next run: {next_run(view, datetime.now(UTC))}")
    if view.paused:
        parts.append(f"paused: {escape(view.pause_reason or 'no reason given')}")
    if view.health != HealthState.ACTIVE and view.reason:
        parts.append(escape(view.reason))
    return " · ".join(parts)


def next_run(view: SupervisorView, now: datetime) -> str:
    """The NEXT column: ``in 59m``, ``due``, ``running``, ``paused`` or ``-``."""
    if view.running:
        return "running"
    if view.open_repair:
        return "repairing"
    if view.paused:
        return "paused"
    if view.next_run_at is None:
        return "-"
    left = (view.next_run_at - now).total_seconds()
    return f"in {span(left)}" if left > 0 else "due"


def breaker(view: SupervisorView) -> str:
    """The BREAKER column: attempts used today, or when it closes again."""
    b = view.breaker
    if b.allowed:
        return f"{b.repairs_today}/{b.max_per_day}"
    if b.open_until is not None:
        return f"OPEN until {b.open_until.astimezone(UTC).strftime('%H:%MZ')}"
    return "closed" if view.health == HealthState.DEAD else "OPEN"


def status_table() -> Table:
    """The empty ``source status`` table (kubectl-like: no box, upper-case headers)."""
    columns = ("NAME", "HEALTH", "VERSION", "LAST RUN", "RECORDS", "FAILS", "REPAIR", "BREAKER")
    return Table(*columns, "NEXT", box=None, pad_edge=False, header_style="bold")


def supervised_row(view: SupervisorView, now: datetime) -> list[str]:
    """A ``source status`` row for a supervised source."""
    last = view.last_run
    repair = "-"
    if view.open_repair:
        repair = f"#{view.open_repair.rsplit('/', 1)[-1]} running"
    elif view.last_repair:
        repair = f"#{view.last_repair.number} {view.last_repair.outcome}"
    fails = str(view.strikes)
    if view.consecutive_failures:
        fails += f" ({view.consecutive_failures} transient)"
    return [
        view.source,
        styled(view.health),
        f"v{view.active_version}" if view.active_version is not None else "-",
        f"{ago(last.at, now)} {last.verdict}" if last else "never",
        (str(last.records) + (" held" if last.held else "")) if last else "-",
        fails,
        repair,
        breaker(view),
        next_run(view, now),
    ]


def unsupervised_row(
    record: SourceRecord, last: ScrapeStats | None, now: datetime, note: str = "unsupervised"
) -> list[str]:
    """A ``source status`` row from the database alone (no supervisor answers)."""
    status = record.status.value
    if status == "ONBOARDING":
        note = "onboarding"
    return [
        record.name,
        styled(status),
        f"v{record.active_version}" if record.active_version is not None else "-",
        f"{ago(last.ended_at or last.started_at, now)} {last.status.lower()}" if last else "never",
        str(last.records) if last else "-",
        "-",
        "-",
        "-",
        note,
    ]


def print_details(view: SupervisorView, transitions: int = 5) -> None:
    """What ``source status NAME`` adds under the table: the reasons behind the row."""
    if view.reason:
        console.print(f"reason: {escape(view.reason)}")
    if view.paused:
        console.print(f"paused: {escape(view.pause_reason or 'no reason given')}")
    console.print(
        f"interval: every {span(view.interval_seconds)}; {plural(view.cycle, 'run')}, "
        f"{plural(view.repairs, 'repair')}"
    )
    if view.last_run:
        run = view.last_run
        console.print(
            f"last run: {escape(run.run_id)} at {stamp(run.at)} ({run.trigger}): {run.verdict}"
            f"{', ' + run.kind.value if run.kind.value != 'none' else ''}"
        )
        for reason in run.reasons:
            console.print(f"  - {escape(reason)}")
    if view.open_repair:
        console.print(f"open repair: {escape(view.open_repair)}")
    if view.last_repair:
        r = view.last_repair
        console.print(f"last repair: #{r.number} {r.outcome}: {escape(r.reason)}")
    console.print(f"repair breaker: {escape(view.breaker.reason)}")
    if view.transitions:
        console.print("transitions:")
        for t in view.transitions[-transitions:]:
            console.print(
                f"  {stamp(t.at)}  {t.from_state.value} → {styled(t.to_state)}  {escape(t.reason)}"
            )


# --- history ---------------------------------------------------------------------------------


def without_echoes(events: list[SourceEvent]) -> list[SourceEvent]:
    """The events minus ``status_changed`` ones that only repeat a ``health_changed``."""
    health = {
        (e.detail.get("from_state"), e.detail.get("to_state"), str(e.detail.get("reason"))[:2000])
        for e in events
        if e.kind == "health_changed"
    }
    return [
        e
        for e in events
        if e.kind != "status_changed"
        or (e.detail.get("from"), e.detail.get("to"), e.detail.get("reason")) not in health
    ]


def _v(value: object) -> str:
    return f"v{value}" if value is not None else "none"


def event_summary(event: SourceEvent) -> str:
    """One line about one stored event of a source."""
    d = event.detail
    who = f" by {d['requested_by']}" if d.get("requested_by") else ""
    match event.kind:
        case "added":
            return f"added ({d.get('url', '')})" + (", revived" if d.get("revived") else "")
        case "version_added":
            return f"{_v(d.get('version'))} written by {d.get('author', '?')}"
        case "version_promoted":
            return f"{_v(d.get('version'))} promoted (was {_v(d.get('previous'))})"
        case "version_rolled_back":
            return f"rolled back to {_v(d.get('version'))} (from {_v(d.get('previous'))})"
        case "status_changed":
            return f"status {d.get('from')} → {d.get('to')}: {d.get('reason', '')}"
        case "health_changed":
            cycle = f" (run {d['cycle']})" if d.get("cycle") else ""
            return f"{d.get('from_state')} → {d.get('to_state')}{cycle}: {d.get('reason', '')}"
        case "repair_started":
            trigger = d.get("trigger") or "no reason given"
            return f"repair {d.get('number')} started{who or ' by the supervisor'}: {trigger}"
        case "repair_finished":
            return _repair_summary(d)
        case "repair_skipped":
            return f"no repair: {d.get('reason', '')} (after {d.get('trigger', '?')})"
        case "supervisor_changed":
            if d.get("interval_seconds") is not None:
                return f"{d.get('action', '?')}{who}: every {span(float(d['interval_seconds']))}"
            reason = f": {d['reason']}" if d.get("reason") else ""
            return f"{d.get('action', '?')}{who}{reason}"
        case "removed":
            return f"removed (was {d.get('previous_status', '?')})"
    return json.dumps(d, default=str, ensure_ascii=False)[:200]


def _repair_summary(d: dict[str, Any]) -> str:
    parts = [f"repair {d.get('number')} {d.get('outcome', '?')}"]
    if d.get("candidate") is not None:
        parts.append(f"candidate {_v(d['candidate'])}")
    if d.get("active_version") is not None:
        parts.append(f"{_v(d['active_version'])} active")
    if d.get("confidence") is not None:
        parts.append(f"confidence {float(d['confidence']):.2f}")
    if d.get("lost_fields"):
        parts.append("lost " + ", ".join(map(str, d["lost_fields"])))
    return ", ".join(parts) + (f": {d['reason']}" if d.get("reason") else "")
