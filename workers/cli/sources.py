"""``mendline scout``, ``extract`` and ``source …``: writing scrapers and running sources."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

import scrapers
from activities.fetch import Fetcher
from activities.fetch.errors import FetchError
from activities.sources_store import SourceStore, SourceStoreError
from activities.storage import Database
from models.durations import parse_duration
from models.scraper import Page, ScraperSpec, SeedPage
from models.sources import (
    ScrapeStats,
    SourceConfig,
    SourceOnboardingInput,
    SourceOnboardingState,
    SourceRunInput,
    SourceStatus,
)
from models.supervisor import RunNowRequest
from workers.cli.common import (
    cli_client,
    console,
    fail,
    get_settings,
    parse_param,
    print_json,
    run_async,
)
from workers.cli.supervisor_client import cancel_supervisor, default_requester, run_supervised

source_app = typer.Typer(
    help="Sources: URLs Mendline writes, validates and runs scrapers for.", no_args_is_help=True
)

ExampleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--example",
        "-e",
        help='field=value the scraper must extract from URL (repeatable), e.g. -e title="Dune".',
    ),
]
ExamplesFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--examples",
        help='JSON file of seed pages: [{"url": …, "values": {"title": "Dune", "author": ["A", "B"]}}].',
    ),
]


def load_examples(
    url: str, example: list[str] | None, examples_file: Path | None
) -> list[SeedPage]:
    """Seed pages from ``--example`` (for ``url``) and ``--examples FILE``."""
    seeds: list[SeedPage] = []
    if example:
        values: dict[str, Any] = {}
        for item in example:
            key, value = parse_param(item)
            text = value if isinstance(value, str | list) else json.dumps(value)
            if key in values:  # a repeated field is a multi-valued example
                previous = values[key] if isinstance(values[key], list) else [values[key]]
                values[key] = [*previous, text]
            else:
                values[key] = text
        seeds.append(SeedPage(url=url, values=values))
    if examples_file:
        try:
            raw = json.loads(examples_file.read_text(encoding="utf-8"))
            if not isinstance(raw, list):
                raise ValueError("expected a JSON list of {url, values} objects")
            seeds += [SeedPage.model_validate(item) for item in raw]
        except (OSError, ValueError, ValidationError) as exc:
            fail(f"--examples {examples_file}: {exc}", 2)
    return seeds


def scout(
    url: Annotated[str, typer.Argument(help="Page to scout.")],
    example: ExampleOpt = None,
    examples_file: ExamplesFileOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the scraper spec (portable JSON) here.")
    ] = None,
    render: Annotated[
        str,
        typer.Option(help="auto (render when the page builds itself with scripts), always, never."),
    ] = "auto",
    limit: Annotated[int, typer.Option(help="Records to show.")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything machine-readable.")
    ] = False,
) -> None:
    """Infer a page's data structure and print the scraper it would use (no server needed)."""
    settings = get_settings()
    seeds = load_examples(url, example, examples_file)
    if render not in ("auto", "always", "never"):
        fail(f"--render must be auto, always or never, got {render!r}", 2)

    async def go() -> tuple[Any, ScraperSpec, list[dict[str, Any]], bool]:
        fetcher = Fetcher(settings)
        try:
            urls = [url, *[s.url for s in seeds if s.url != url]]
            rendered = render == "always"
            fetched = [await fetcher.fetch(u, render=rendered) for u in urls]
            pages = [
                Page(url=p.final_url, body=p.text(), content_type=p.content_type) for p in fetched
            ]
            seeds_fixed = [
                s.model_copy(update={"url": fetched[urls.index(s.url)].final_url}) for s in seeds
            ]
            try:
                blueprint = scrapers.scout(pages, seeds_fixed or None)
            except scrapers.NoRecordsFoundError:
                from activities.fetch import looks_script_built

                if render != "auto" or not any(looks_script_built(p) for p in fetched):
                    raise
                fetched = [await fetcher.fetch(u, render=True) for u in urls]
                pages = [
                    Page(url=p.final_url, body=p.text(), content_type=p.content_type)
                    for p in fetched
                ]
                blueprint = scrapers.scout(pages, seeds_fixed or None)
                rendered = True
            spec = scrapers.build_spec(blueprint, name="scraper").model_copy(
                update={"render": rendered}
            )
            records = scrapers.extract_records(
                spec, fetched[0].body, fetched[0].final_url, charset=fetched[0].charset
            )
            return blueprint, spec, records, rendered
        finally:
            await fetcher.aclose()

    try:
        blueprint, spec, records, rendered = run_async(go())
    except FetchError as exc:
        fail(f"fetching failed: {exc}")
    except scrapers.ScraperError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    if out:
        out.write_text(spec.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if as_json:
        print_json(
            {
                "blueprint": blueprint.model_dump(mode="json"),
                "spec": spec.model_dump(mode="json"),
                "rendered": rendered,
                "records": records[:limit],
                "record_count": len(records),
            }
        )
        return
    console.print(
        f"[bold]{escape(url)}[/]: {blueprint.kind}, {len(records)} record(s), confidence {blueprint.confidence:.2f}"
        + (", rendered with the browser" if rendered else "")
    )
    if blueprint.container:
        console.print(f"  container: {escape(blueprint.container)}")
    console.print(f"  key field: {blueprint.key_field or '(none: records keyed by content hash)'}")
    if blueprint.pagination:
        console.print(
            f"  pagination: {blueprint.pagination.kind} {escape(blueprint.pagination.selector or blueprint.pagination.param or '')}"
        )
    table = Table("field", "type", "selector", "fill", "samples")
    for field in blueprint.fields:
        samples = ", ".join(str(s) for s in field.samples[:3])
        table.add_row(
            field.name,
            field.type,
            escape(field.selector),
            f"{field.fill_rate:.0%}",
            escape(samples[:80]),
        )
    console.print(table)
    for note in blueprint.notes:
        console.print(f"  note: {escape(note)}")
    _print_records(records[:limit], "table")
    if out:
        console.print(
            f"spec written to {out}; run it with: mendline extract --spec {out} {escape(url)}"
        )


def extract(
    urls: Annotated[list[str], typer.Argument(help="Pages to extract from.")],
    spec_file: Annotated[
        Path,
        typer.Option("--spec", help="Scraper spec JSON (from `scout --out` or `source export`)."),
    ],
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv or table.")] = "jsonl",
) -> None:
    """Run a scraper spec on pages: no database, no server — the quick debugging loop."""
    settings = get_settings()
    try:
        spec = ScraperSpec.model_validate_json(spec_file.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        fail(f"--spec {spec_file}: {exc}", 2)
    if fmt not in ("jsonl", "csv", "table"):
        fail(f"--format must be jsonl, csv or table, got {fmt!r}", 2)

    async def go() -> list[dict[str, Any]]:
        fetcher = Fetcher(settings)
        out: list[dict[str, Any]] = []
        try:
            for url in urls:
                page = await fetcher.fetch(url, render=spec.render)
                for record in scrapers.extract_records(
                    spec, page.body, page.final_url, charset=page.charset
                ):
                    out.append({**record, "_url": page.final_url})
        finally:
            await fetcher.aclose()
        return out

    try:
        records = run_async(go())
    except FetchError as exc:
        fail(f"fetching failed: {exc}")
    except scrapers.ScraperError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    _print_records(records, fmt)


def _print_records(records: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "jsonl":
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    elif fmt == "csv":
        columns = list(dict.fromkeys(k for r in records for k in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for record in records:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in record.items()}
            )
        sys.stdout.write(buffer.getvalue())
    else:
        if not records:
            console.print("(no records)")
            return
        columns = [k for k in dict.fromkeys(k for r in records for k in r) if not k.startswith("_")]
        table = Table(*columns)
        for record in records:
            table.add_row(*(escape(str(record.get(c, "")))[:60] for c in columns))
        console.print(table)


# --- sources, through Temporal ---------------------------------------------------------------


def _store() -> SourceStore:
    return SourceStore(Database(get_settings().resolved_database_url))


@source_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Source name (lower case, digits, - and _).")],
    url: Annotated[str, typer.Argument(help="Page to scrape.")],
    example: ExampleOpt = None,
    examples_file: ExamplesFileOpt = None,
    interval: Annotated[str, typer.Option(help="How often the source runs (e.g. 30m, 1h).")] = "1h",
    render: Annotated[str, typer.Option(help="auto, always or never.")] = "auto",
    max_pages: Annotated[int, typer.Option(help="Pages a run follows through pagination.")] = 5,
    no_robots: Annotated[
        bool, typer.Option("--no-robots", help="Do not honour robots.txt for this source.")
    ] = False,
    require_approval: Annotated[
        bool,
        typer.Option("--require-approval", help="A person approves every new scraper version."),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Wait until a scraper version is active (exit 0) or onboarding fails."
        ),
    ] = False,
) -> None:
    """Onboard a source: fetch → scout → build → validate → promote (workflow source/NAME/onboard)."""
    try:
        config = SourceConfig(
            name=name,
            url=url,
            examples=load_examples(url, example, examples_file),
            interval_seconds=parse_duration(interval),
            render=render,
            respect_robots=not no_robots,
            max_pages=max_pages,
            require_approval=require_approval,
        )
    except (ValidationError, ValueError) as exc:
        fail(f"invalid source: {exc}", 2)
    settings = get_settings()
    wid = f"source/{name}/onboard"

    async def go() -> int:
        client = await cli_client()
        try:
            handle = await client.start_workflow(
                "SourceOnboarding",
                SourceOnboardingInput(config=config),
                id=wid,
                task_queue=settings.task_queue,
                result_type=SourceOnboardingState,
                static_summary=f"onboard source {name}: {url}",
            )
        except RPCError as exc:
            fail(
                f"could not start {wid}: {exc.message} (is source {name!r} already being onboarded?)"
            )
        console.print(f"onboarding [bold]{name}[/] ({wid})")
        if not wait:
            console.print(f"  follow it: temporal workflow query --workflow-id {wid} --type state")
            return 0
        t0 = time.monotonic()
        try:
            state = await handle.result()
        except WorkflowFailureError as exc:
            message = _root_message(exc)
            fail(f"onboarding {name} failed after {time.monotonic() - t0:.1f}s: {message}")
        _print_onboarding(state, time.monotonic() - t0)
        return 0

    raise typer.Exit(run_async(go()))


def _root_message(exc: BaseException) -> str:
    """The first application error's message in a workflow failure's cause chain."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ApplicationError):
            prefix = (
                f"{current.type}: "
                if current.type and not current.message.startswith(current.type)
                else ""
            )
            return prefix + current.message
        current = getattr(current, "cause", None)
    return str(exc)


def _print_onboarding(state: SourceOnboardingState, elapsed: float) -> None:
    report = state.report
    console.print(
        f"[green]active[/]: {state.source} v{state.version} in {elapsed:.1f}s"
        + (" (rendered with the browser)" if state.rendered else "")
        + (f", approved by {state.approved_by}" if state.approved_by else "")
    )
    if report:
        rates = ", ".join(f"{k} {v:.0%}" for k, v in report.fill_rates.items())
        console.print(
            f"  validation: {report.total_records} records on the live page; fill rates: {rates}"
        )
    if state.supervisor:
        console.print(
            f"  supervised by {state.supervisor}: it runs the source at its interval and repairs "
            f"it when the site changes (`mendline source status {state.source}`)"
        )


@source_app.command("run")
def run_source(
    name: Annotated[str, typer.Argument(help="Source name.")],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for the run (and any repair it starts); exit 0 iff the source ends ACTIVE.",
        ),
    ] = False,
    timeout: Annotated[
        str, typer.Option(help="How long --wait waits (e.g. 90s, 10m) before giving up.")
    ] = "10m",
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "run by hand",
    requested_by: Annotated[
        str | None, typer.Option("--as", help="Who asks (recorded; default: your login name).")
    ] = None,
) -> None:
    """Scrape a source now, through its supervisor when it has one.

    The supervisor assesses the run and repairs a drifted scraper. A source without a
    running supervisor (workflow source/NAME) is scraped once with SourceRun instead, with
    neither assessment nor repair.
    """
    settings = get_settings()
    try:
        timeout_seconds = parse_duration(timeout)
        request = RunNowRequest(reason=reason, requested_by=requested_by or default_requester())
    except (ValueError, ValidationError) as exc:
        fail(f"invalid option: {exc}", 2)
    try:
        _store().require_source(name)
    except SourceStoreError as exc:
        fail(str(exc))
    wid = f"source/{name}/run/{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"

    async def go() -> int:
        client = await cli_client()
        supervised = await run_supervised(client, name, request, wait, timeout_seconds)
        if supervised is not None:
            return supervised
        console.print(
            f"note: {name} has no running supervisor, so this run is not assessed nor repaired; "
            f"supervise it with `mendline source supervise {name}`"
        )
        handle = await client.start_workflow(
            "SourceRun",
            SourceRunInput(source=name),
            id=wid,
            task_queue=settings.task_queue,
            result_type=ScrapeStats,
            static_summary=f"scrape source {name}",
        )
        console.print(f"run [bold]{wid}[/]")
        if not wait:
            return 0
        try:
            stats = await handle.result()
        except WorkflowFailureError as exc:
            fail(f"run of {name} failed: {_root_message(exc)}")
        console.print(
            f"{stats.records} records from {stats.pages} page(s) with v{stats.version}: "
            f"{stats.inserted} new, {stats.updated} changed, {stats.unchanged} unchanged"
        )
        console.print(f"  see them: mendline source records {name} --run {stats.run_id}")
        return 0

    raise typer.Exit(run_async(go()))


@source_app.command("list")
def list_sources(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List sources with their status and active version."""
    store = _store()
    sources = store.list_sources()
    if as_json:
        print_json([s.model_dump(mode="json") for s in sources])
        return
    table = Table("name", "status", "version", "url", "updated")
    for s in sources:
        table.add_row(
            s.name,
            s.status,
            str(s.active_version or ""),
            escape(s.config.url),
            str(s.updated_at or "")[:19],
        )
    console.print(table)
    if not sources:
        console.print("no sources yet — add one with `mendline source add NAME URL --wait`")


@source_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Source name.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a source: active version, its validation report, versions and last run."""
    store = _store()
    try:
        source = store.require_source(name)
    except SourceStoreError as exc:
        fail(str(exc))
    active = store.active_version(name)
    versions = store.list_versions(name)
    runs = store.runs(name, 1)
    if as_json:
        print_json(
            {
                "source": source.model_dump(mode="json"),
                "active": active.model_dump(mode="json") if active else None,
                "versions": [
                    {
                        "version": v.version,
                        "sha256": v.sha256,
                        "author": v.author,
                        "created_at": v.created_at,
                        "active": v.active,
                    }
                    for v in versions
                ],
                "last_run": runs[0].model_dump(mode="json") if runs else None,
            }
        )
        return
    console.print(
        f"[bold]{name}[/] {escape(source.config.url)}: {source.status}, active version {source.active_version}"
    )
    if active and active.report:
        r = active.report
        console.print(
            f"  v{active.version} ({active.author}, sha {active.sha256[:12]}): validation {'passed' if r.passed else 'FAILED'}, "
            f"{r.total_records} records; fill rates "
            + ", ".join(f"{k} {v:.0%}" for k, v in r.fill_rates.items())
        )
        for page in r.pages:
            for problem in page.problems:
                console.print(f"    problem: {escape(problem)}")
    for v in versions:
        console.print(
            f"  v{v.version} {v.author} {str(v.created_at)[:19]}{' (active)' if v.active else ''}"
        )
    if runs:
        last = runs[0]
        console.print(
            f"  last run {last.run_id}: {last.status}, {last.records} records from {last.pages} page(s)"
        )


@source_app.command("records")
def records(
    name: Annotated[str, typer.Argument(help="Source name.")],
    run: Annotated[str, typer.Option(help="'latest' or a run id.")] = "latest",
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv or table.")] = "table",
    limit: Annotated[int | None, typer.Option(help="At most this many records.")] = None,
) -> None:
    """The records of one run of a source (stable field names)."""
    if fmt not in ("jsonl", "csv", "table"):
        fail(f"--format must be jsonl, csv or table, got {fmt!r}", 2)
    store = _store()
    try:
        store.require_source(name)
        rows = store.records(name, None if run == "latest" else run, limit)
    except SourceStoreError as exc:
        fail(str(exc))
    _print_records(rows, fmt)


@source_app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="Source name.")],
    out: Annotated[Path, typer.Option(help="Folder to write the spec and the module into.")] = Path(
        "."
    ),
) -> None:
    """Write the active scraper's spec (JSON) and its standalone Python module."""
    store = _store()
    active = store.active_version(name)
    if active is None:
        fail(f"source {name!r} has no active scraper version")
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / f"{name}_v{active.version}.json"
    module_path = out / f"{name}_v{active.version}.py"
    spec_path.write_text(active.spec.model_dump_json(indent=2) + "\n", encoding="utf-8")
    module_path.write_text(scrapers.render_module(active.spec), encoding="utf-8")
    console.print(f"wrote {spec_path} and {module_path} (run it: python {module_path} URL)")


@source_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Source name.")]) -> None:
    """Remove a source: stop its supervisor, then mark it removed (records and versions are kept)."""
    store = _store()
    found = store.get_source(name)
    stopped = False
    if found is not None and found.status != SourceStatus.REMOVED:

        async def stop() -> bool:
            return await cancel_supervisor(await cli_client(), name)

        stopped = run_async(stop())
    try:
        store.remove_source(name)
    except SourceStoreError as exc:
        fail(str(exc))
    console.print(f"removed {name}" + (" (its supervisor was asked to stop)" if stopped else ""))
