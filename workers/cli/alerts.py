"""``mendline alerts …`` and ``mendline incidents …``: rules, test alerts, incidents.

Rules come from ``--rules FILE`` or ``MENDLINE_ALERT_RULES``; incidents from Mendline's
database. Nothing here needs the Temporal server.
"""

from __future__ import annotations

import difflib
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from activities.alerting import build_notifiers, deliver, sample_alert
from activities.incidents_store import IncidentNotFoundError, IncidentStore
from activities.storage import Database
from models.alert_rules import RuleFileError, load_rule_file
from models.alerts import (
    BUILTIN_NOTIFIERS,
    AlertRule,
    EmailNotifierSpec,
    NotifierSpec,
    RuleFile,
    SlackNotifierSpec,
    WebhookNotifierSpec,
)
from models.incidents import Incident, IncidentStatus
from workers.cli.common import configure_logging, console, fail, get_settings, print_json, run_async

alerts_app = typer.Typer(
    help="Alert rules: list and check them, send a test alert through a rule's notifiers.",
    no_args_is_help=True,
)
incidents_app = typer.Typer(
    help="Incidents opened by alert rules: list, show, resolve.", no_args_is_help=True
)

RulesOpt = Annotated[
    Path | None,
    typer.Option("--rules", help="Rules file (default: MENDLINE_ALERT_RULES)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")]
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


def _rule_file(rules: Path | None) -> tuple[Path, RuleFile]:
    path = rules or get_settings().alert_rules
    try:
        return path, load_rule_file(path)
    except RuleFileError as exc:
        fail(str(exc))


def duration_text(seconds: float) -> str:
    """``3600`` → ``1h``, ``90`` → ``1m30s``, ``0`` → ``0s``."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _target(spec: NotifierSpec) -> str:
    if isinstance(spec, WebhookNotifierSpec | SlackNotifierSpec):
        return spec.url
    if isinstance(spec, EmailNotifierSpec):
        return ", ".join(spec.to)
    return "logger mendline.alerts"


def _scope_text(rule: AlertRule) -> str:
    return f"{rule.scope.kind} {rule.scope.name}" if rule.scope.name else f"every {rule.scope.kind}"


@alerts_app.command("list")
def alerts_list(rules: RulesOpt = None, as_json: JsonOpt = False) -> None:
    """List the rules and notifiers of the rules file (exit 1 with every problem if invalid)."""
    path, rule_file = _rule_file(rules)
    if as_json:
        print_json(
            {
                "file": str(path),
                **rule_file.model_dump(mode="json", by_alias=True),
            }
        )
        return
    table = Table(
        "rule",
        "metric",
        "scope",
        "condition",
        "severity",
        "for",
        "cooldown",
        "group by",
        "notifiers",
    )
    for rule in rule_file.rules:
        table.add_row(
            escape(rule.name),
            str(rule.metric),
            escape(_scope_text(rule)),
            escape(rule.condition_text()),
            f"[{SEVERITY_STYLE[rule.severity]}]{rule.severity}[/]",
            duration_text(rule.for_),
            duration_text(rule.cooldown),
            ", ".join(rule.group_by) or "(one incident)",
            escape(", ".join(rule.notifiers)),
        )
    console.print(
        f"[green]ok[/] {escape(str(path))}: {len(rule_file.rules)} rules, {len(rule_file.notifiers)} notifiers"
    )
    console.print(table)
    notifiers = Table("notifier", "type", "target")
    for name, spec in {**BUILTIN_NOTIFIERS, **rule_file.notifiers}.items():
        notifiers.add_row(escape(name), spec.type, escape(_target(spec)))
    console.print(notifiers)


@alerts_app.command("test")
def alerts_test(
    rule: Annotated[str, typer.Argument(help="Name of the rule whose notifiers to test.")],
    rules: RulesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a test alert through each notifier of RULE and report each delivery.

    Exits 1 if any notifier failed (after its own retries).
    """
    settings = get_settings()
    configure_logging(settings)
    _, rule_file = _rule_file(rules)
    try:
        chosen = rule_file.rule(rule)
    except KeyError:
        names = [r.name for r in rule_file.rules]
        close = difflib.get_close_matches(rule, names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"rules: {', '.join(names) or 'none'}"
        fail(f"no rule {rule!r} in the rules file ({hint})")
    alert = sample_alert(chosen, datetime.now(UTC))
    deliveries = run_async(deliver(alert, build_notifiers(rule_file, settings)))
    if as_json:
        print_json([d.model_dump(mode="json") for d in deliveries])
    else:
        table = Table("notifier", "type", "result", "attempts", "detail")
        for d in deliveries:
            table.add_row(
                escape(d.notifier),
                d.type,
                "[green]delivered[/]" if d.ok else "[red]failed[/]",
                str(d.attempts),
                escape(d.detail if d.ok else d.error),
            )
        console.print(f"test alert of rule {escape(chosen.name)!r}:")
        console.print(table)
    if not all(d.ok for d in deliveries):
        raise typer.Exit(1)


# --- incidents ---------------------------------------------------------------------------------


@contextmanager
def _store() -> Iterator[IncidentStore]:
    db = Database(get_settings().resolved_database_url)
    try:
        yield IncidentStore(db)
    finally:
        db.dispose()


def _stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


@incidents_app.command("list")
def incidents_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List incidents, newest first."""
    with _store() as store:
        found = store.incidents(open_only=open_only, limit=limit)
    if as_json:
        print_json([i.model_dump(mode="json") for i in found])
        return
    table = Table(
        "id",
        "status",
        "severity",
        "rule",
        "fingerprint",
        "opened",
        "last breach",
        "alerts",
        "summary",
    )
    for i in found:
        table.add_row(
            str(i.id),
            "[red]open[/]" if i.status == IncidentStatus.OPEN else "resolved",
            f"[{SEVERITY_STYLE[i.severity]}]{i.severity}[/]",
            escape(i.rule),
            escape(i.fingerprint),
            _stamp(i.opened_at),
            _stamp(i.last_breach_at),
            str(i.alerts_sent),
            escape(i.summary[:80]),
        )
    console.print(table)
    if not found:
        console.print("no open incidents" if open_only else "no incidents recorded yet")


def _get(store: IncidentStore, incident_id: int) -> Incident:
    try:
        return store.get(incident_id)
    except IncidentNotFoundError as exc:
        fail(str(exc))


@incidents_app.command("show")
def incidents_show(
    incident_id: Annotated[int, typer.Argument(metavar="ID", help="Incident id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show an incident: what breaches, since when, and the alerts sent about it."""
    with _store() as store:
        incident = _get(store, incident_id)
        alerts = store.alerts(incident_id)
    if as_json:
        print_json(
            {
                **incident.model_dump(mode="json"),
                "alerts": [a.model_dump(mode="json") for a in alerts],
            }
        )
        return
    status = "[red]open[/]" if incident.status == IncidentStatus.OPEN else "resolved"
    console.print(f"[bold]incident {incident.id}[/] {status} — {escape(incident.fingerprint)}")
    console.print(f"  rule      {escape(incident.rule)} ({incident.metric}, {incident.severity})")
    console.print(f"  opened    {_stamp(incident.opened_at)} UTC")
    console.print(f"  breached  {_stamp(incident.last_breach_at)} UTC (last)")
    if incident.resolved_at:
        who = "automatically" if incident.resolved_by == "auto" else f"by {incident.resolved_by}"
        console.print(
            f"  resolved  {_stamp(incident.resolved_at)} UTC {escape(who)}: {escape(incident.resolution or '')}"
        )
    console.print(f"  summary   {escape(incident.summary)}")
    if incident.breaches:
        table = Table("scope", "value", "expected", "score", "since", "reason")
        for b in incident.breaches:
            table.add_row(
                escape(f"{b.scope_kind} {b.scope_name}"),
                f"{b.value:.4g}",
                "" if b.expected is None else f"{b.expected:.4g}",
                "" if b.score is None else f"{b.score:.1f}",
                _stamp(b.since),
                escape(b.reason),
            )
        console.print(table)
    table = Table("alert", "kind", "at", "deliveries")
    for a in alerts:
        outcome = ", ".join(f"{d.notifier} {'ok' if d.ok else 'FAILED'}" for d in a.deliveries)
        table.add_row(str(a.id), str(a.kind), _stamp(a.at), escape(outcome or "pending"))
    console.print(table if alerts else "  no alerts sent (cooldown, or not firing long enough)")


@incidents_app.command("resolve")
def incidents_resolve(
    incident_id: Annotated[int, typer.Argument(metavar="ID", help="Incident id.")],
    reason: Annotated[str | None, typer.Option(help="Why it is resolved (kept with it).")] = None,
    as_user: Annotated[
        str | None, typer.Option("--as", help="Who resolves it (default: your login).")
    ] = None,
) -> None:
    """Resolve an incident by hand.

    While its scopes still breach, the Monitor does not open it again until they have been
    back to normal once.
    """
    who = as_user or _login()
    try:
        with _store() as store:
            incident, changed = store.resolve(incident_id, by=who, reason=reason)
    except IncidentNotFoundError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc), 2)
    if changed:
        console.print(
            f"resolved incident {incident.id} ({escape(incident.fingerprint)}) as {escape(who)}"
        )
    else:
        console.print(
            f"incident {incident.id} was already resolved at {_stamp(incident.resolved_at)} UTC "
            f"by {escape(incident.resolved_by or '?')}"
        )


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "cli"
