"""``mendline report``: a self-contained HTML page with plots, openable offline.

Charts are inline SVG drawn here (no JavaScript, no external files, no network): records
per source over time with repairs and health changes marked, task latency percentiles,
pipeline runs by status, incidents, and remediation decisions by verdict. Hovering a
point shows its details (SVG ``<title>``).
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path
from typing import Annotated

import typer

from activities.reporting import collect_report
from activities.storage import Database
from models.report import ReportData, SourceHistory, TaskLatency
from workers.cli.common import console, fail, get_settings

WIDTH, HEIGHT, PAD = 720, 160, 36
COLORS = {"ok": "#2b7a4b", "failed": "#c0392b", "held": "#d68910", "mark": "#5b6ee1"}
STATUS_COLORS = {"SUCCEEDED": "#2b7a4b", "FAILED": "#c0392b", "CANCELLED": "#7f8c8d"}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:780px;color:#1d2330;background:#fafbfc}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2.2rem;
border-bottom:1px solid #dde1e7;padding-bottom:.3rem}h3{font-size:1rem;margin:.2rem 0}
.muted{color:#6b7385}.card{background:#fff;border:1px solid #e3e6eb;border-radius:8px;
padding:.8rem 1rem;margin:.8rem 0}svg text{font:11px system-ui,sans-serif;fill:#4a5163}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #eceef2;font-size:13px}th{color:#6b7385;font-weight:600}
.sev-critical{color:#c0392b;font-weight:600}.sev-warning{color:#b9770e}.pill{display:inline-block;
padding:0 .45rem;border-radius:9px;background:#eef0f4;font-size:12px}
"""


def report(
    out: Annotated[Path, typer.Option(help="Where to write the HTML page.")] = Path("report.html"),
    days: Annotated[float, typer.Option(help="Period covered, in days.")] = 7.0,
) -> None:
    """Write a self-contained HTML report (plots of sources, tasks, incidents, decisions)."""
    if days <= 0:
        fail("--days must be positive", 2)
    settings = get_settings()
    data = collect_report(Database(settings.resolved_database_url), days)
    try:
        out.write_text(render(data), encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc}")
    console.print(
        f"wrote {out} ({len(data.sources)} sources, {len(data.tasks)} tasks, "
        f"{len(data.incidents)} incidents); open it in any browser, no network needed"
    )


def render(data: ReportData) -> str:
    """The whole page."""
    period = f"{_day(data.since)} – {_day(data.generated_at)}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>Mendline report {escape(_day(data.generated_at))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Mendline report</h1>",
        f"<p class='muted'>{escape(period)} · generated {escape(_stamp(data.generated_at))}</p>",
        _runs_section(data),
        _sources_section(data),
        _tasks_section(data.tasks),
        _incidents_section(data),
        _decisions_section(data.decisions),
        "</body></html>",
    ]
    return "\n".join(parts)


# --- sections ---------------------------------------------------------------------------------


def _runs_section(data: ReportData) -> str:
    if not data.pipeline_runs:
        return "<h2>Pipeline runs</h2><p class='muted'>No pipeline runs in this period.</p>"
    bars = _bars(
        [
            (status, count, STATUS_COLORS.get(status, "#5b6ee1"))
            for status, count in sorted(data.pipeline_runs.items())
        ],
        "runs",
    )
    return f"<h2>Pipeline runs</h2><div class='card' id='pipeline-runs'>{bars}</div>"


def _sources_section(data: ReportData) -> str:
    if not data.sources:
        return "<h2>Sources</h2><p class='muted'>No sources yet (`mendline source add`).</p>"
    # One time axis for every source, from the earliest thing shown (not the empty days
    # before it) to now, so sources line up.
    seen = [run.at for s in data.sources for run in s.runs]
    seen += [mark.at for s in data.sources for mark in s.marks]
    start = max(data.since, min(seen, default=data.since))
    pad = (data.generated_at - start) * 0.03
    cards = [_source_card(source, start - pad, data.generated_at) for source in data.sources]
    legend = (
        f"<p class='muted'>Records per run: <b style='color:{COLORS['ok']}'>●</b> good, "
        f"<b style='color:{COLORS['held']}'>●</b> held back (looked broken), "
        f"<b style='color:{COLORS['failed']}'>✕</b> failed; "
        f"<b style='color:{COLORS['mark']}'>|</b> repairs, promotions and health changes.</p>"
    )
    return "<h2>Sources</h2>" + legend + "".join(cards)


def _source_card(source: SourceHistory, start: datetime, end: datetime) -> str:
    span = max((end - start).total_seconds(), 1.0)
    top = max([run.records for run in source.runs] + [1])

    def x(at: datetime) -> float:
        return PAD + (WIDTH - 2 * PAD) * min(max((at - start).total_seconds() / span, 0.0), 1.0)

    def y(value: float) -> float:
        return HEIGHT - PAD + (2 * PAD - HEIGHT) * value / top

    shapes = [_axes(top, start, end)]
    for mark in source.marks:
        shapes.append(
            f"<line x1='{x(mark.at):.1f}' y1='{PAD / 2}' x2='{x(mark.at):.1f}' y2='{HEIGHT - PAD}' "
            f"stroke='{COLORS['mark']}' stroke-dasharray='3,3'><title>{escape(_stamp(mark.at))}: "
            f"{escape(mark.label)}</title></line>"
        )
    good = [run for run in source.runs if run.status == "SUCCEEDED" and not run.held]
    if len(good) > 1:
        line = " ".join(f"{x(run.at):.1f},{y(run.records):.1f}" for run in good)
        shapes.append(
            f"<polyline points='{line}' fill='none' stroke='{COLORS['ok']}' stroke-width='1.5'/>"
        )
    for run in source.runs:
        tip = f"{escape(_stamp(run.at))}: {run.records} records, {escape(run.status.lower())}"
        if run.status == "FAILED":
            cx, cy = x(run.at), y(0)
            shapes.append(
                f"<path d='M{cx - 4:.1f},{cy - 4:.1f}l8,8m0,-8l-8,8' stroke='{COLORS['failed']}' "
                f"stroke-width='2'><title>{tip}</title></path>"
            )
            continue
        color = COLORS["held"] if run.held else COLORS["ok"]
        tip += " (held back)" if run.held else ""
        shapes.append(
            f"<circle cx='{x(run.at):.1f}' cy='{y(run.records):.1f}' r='3.2' fill='{color}'>"
            f"<title>{tip}</title></circle>"
        )
    repairs = [m for m in source.marks if m.kind == "repair"]
    summary = f"{len(source.runs)} runs, {len(repairs)} repairs" + (
        f", active v{source.active_version}" if source.active_version else ""
    )
    svg = _svg(f"records of {source.name}", "".join(shapes))
    return (
        f"<div class='card source' id='source-{escape(source.name)}'><h3>{escape(source.name)} "
        f"<span class='pill'>{escape(source.status)}</span></h3>"
        f"<p class='muted'>{escape(summary)}</p>{svg}</div>"
    )


def _tasks_section(tasks: list[TaskLatency]) -> str:
    if not tasks:
        return "<h2>Task latency</h2><p class='muted'>No task attempts in this period.</p>"
    top = max(task.p99 for task in tasks) or 1.0
    row_height, label = 22, 220
    height = row_height * len(tasks) + 30
    shapes = []
    for index, task in enumerate(tasks):
        y0 = 10 + index * row_height
        name = f"{task.pipeline}/{task.task}"
        shapes.append(f"<text x='0' y='{y0 + 13}'>{escape(name[:34])}</text>")
        for value, shade, share in (
            (task.p99, "#c9d0f5", 1.0),
            (task.p90, "#8e9cec", 0.7),
            (task.p50, "#4657c9", 0.45),
        ):
            width = (WIDTH - label - 80) * value / top
            shapes.append(
                f"<rect x='{label}' y='{y0 + 8 * (1 - share):.1f}' width='{width:.1f}' "
                f"height='{16 * share:.1f}' fill='{shade}'><title>{escape(name)}: p50 "
                f"{task.p50:.3f}s, p90 {task.p90:.3f}s, p99 {task.p99:.3f}s; {task.attempts} attempts, "
                f"{task.failures} failed</title></rect>"
            )
        shapes.append(
            f"<text x='{WIDTH - 75}' y='{y0 + 13}'>{task.p90:.2f}s"
            + (f" · {task.failures}✕" if task.failures else "")
            + "</text>"
        )
    svg = (
        f"<svg role='img' aria-label='task latency percentiles' viewBox='0 0 {WIDTH} {height}' "
        f"width='100%'>{''.join(shapes)}</svg>"
    )
    legend = "<p class='muted'>Bars: p50 (dark), p90, p99 (light); the number is p90.</p>"
    return f"<h2>Task latency</h2>{legend}<div class='card' id='task-latency'>{svg}</div>"


def _incidents_section(data: ReportData) -> str:
    if not data.incidents:
        return "<h2>Incidents</h2><p class='muted'>No incidents in this period.</p>"
    rows = "".join(
        f"<tr><td>{i.id}</td><td class='sev-{escape(i.severity.value)}'>{escape(i.severity.value)}</td>"
        f"<td>{escape(i.fingerprint)}</td><td>{escape(_stamp(i.opened_at))}</td>"
        f"<td>{escape(i.status.value)}</td><td>{escape(i.summary[:120])}</td></tr>"
        for i in data.incidents
    )
    return (
        "<h2>Incidents</h2><div class='card' id='incidents'><table><tr><th>id</th><th>severity"
        "</th><th>incident</th><th>opened</th><th>status</th><th>summary</th></tr>"
        f"{rows}</table></div>"
    )


def _decisions_section(decisions: dict[str, int]) -> str:
    if not decisions:
        return (
            "<h2>Remediation decisions</h2><p class='muted'>No remediation decisions in this "
            "period.</p>"
        )
    palette = {"execute": "#2b7a4b", "needs_approval": "#d68910", "block": "#c0392b"}
    bars = _bars(
        [(v, n, palette.get(v, "#5b6ee1")) for v, n in sorted(decisions.items())], "decisions"
    )
    return f"<h2>Remediation decisions</h2><div class='card' id='decisions'>{bars}</div>"


# --- drawing ----------------------------------------------------------------------------------


def _bars(items: list[tuple[str, int, str]], unit: str) -> str:
    top = max(count for _, count, _ in items) or 1
    row, label = 24, 140
    shapes = []
    for index, (name, count, color) in enumerate(items):
        y0 = 6 + index * row
        width = (WIDTH - label - 60) * count / top
        shapes.append(
            f"<text x='0' y='{y0 + 14}'>{escape(name)}</text><rect x='{label}' y='{y0}' "
            f"width='{width:.1f}' height='18' fill='{color}'><title>{escape(name)}: {count} "
            f"{unit}</title></rect><text x='{label + width + 6:.1f}' y='{y0 + 14}'>{count}</text>"
        )
    height = row * len(items) + 10
    return (
        f"<svg role='img' aria-label='{unit}' viewBox='0 0 {WIDTH} {height}' width='100%'>"
        f"{''.join(shapes)}</svg>"
    )


def _axes(top: int, start: datetime, end: datetime) -> str:
    bottom, right = HEIGHT - PAD, WIDTH - PAD
    return (
        f"<line x1='{PAD}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#b8bec9'/>"
        f"<line x1='{PAD}' y1='{PAD / 2}' x2='{PAD}' y2='{bottom}' stroke='#b8bec9'/>"
        f"<text x='{PAD - 6}' y='{PAD}' text-anchor='end'>{top}</text>"
        f"<text x='{PAD - 6}' y='{bottom}' text-anchor='end'>0</text>"
        f"<text x='{PAD}' y='{HEIGHT - 12}'>{escape(_minute(start))}</text>"
        f"<text x='{right}' y='{HEIGHT - 12}' text-anchor='end'>{escape(_minute(end))}</text>"
    )


def _svg(label: str, body: str) -> str:
    return (
        f"<svg role='img' aria-label='{escape(label)}' viewBox='0 0 {WIDTH} {HEIGHT}' "
        f"width='100%'>{body}</svg>"
    )


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def _minute(at: datetime) -> str:
    return at.strftime("%m-%d %H:%M")


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")
