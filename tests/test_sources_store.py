"""Source storage on SQLite and PostgreSQL: sources, versions, bronze, silver, runs, events."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from activities.sources_store import (
    PageNotFoundError,
    SourceExistsError,
    SourceNotFoundError,
    SourceStore,
    VersionNotFoundError,
    canonical_json,
    record_key,
)
from activities.storage import MIGRATIONS_DIR, Database, current_revision, make_engine
from models.db import Base
from models.db_sources import (
    BronzePageRow,
    ScraperVersionRow,
    SilverObservationRow,
    SilverRecordRow,
    SourceRunRow,
)
from models.scraper import FieldSpec, ScraperSpec, SpecMeta, ValidationReport
from models.sources import ScrapeStats, SourceConfig, SourceStatus

HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
SOURCE_TABLES = {
    "sources",
    "scraper_versions",
    "bronze_pages",
    "silver_records",
    "silver_observations",
    "source_runs",
    "source_events",
}


@pytest.fixture
def store(db: Database) -> SourceStore:
    return SourceStore(db)


def count(db: Database, table: Any, *where: Any) -> int:
    with db.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(*where)
        return int(conn.execute(query).scalar_one())


def config(name: str = "shop", url: str = "https://shop.example/list") -> SourceConfig:
    return SourceConfig(name=name, url=url)


def spec(*fields: str, notes: str = "") -> ScraperSpec:
    return ScraperSpec(
        kind="html-list",
        container=".item",
        fields=[FieldSpec(name=name, selector=f".{name}") for name in fields],
        key_field=fields[0],
        meta=SpecMeta(notes=notes),
    )


def add(store: SourceStore, *fields: str, source: str = "shop") -> int:
    return store.add_version(source, spec(*fields), "heuristic", 0.8, "# module\n").version


def in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same time; re-raise the first error any of them hit."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(calls))

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


# --- migrations --------------------------------------------------------------------------------


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        Database(db_url).dispose()
        assert current_revision(engine) == HEAD
        assert set(sa.inspect(engine).get_table_names()) >= SOURCE_TABLES
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


# --- sources -----------------------------------------------------------------------------------


def test_a_duplicate_source_name_is_refused(store: SourceStore) -> None:
    store.create_source(config())
    with pytest.raises(SourceExistsError, match="mendline source remove shop"):
        store.create_source(config(url="https://other.example/"))

    source = store.require_source("shop")
    assert source.url == "https://shop.example/list"
    assert source.status is SourceStatus.ONBOARDING
    assert source.config == config()
    assert [s.name for s in store.list_sources()] == ["shop"]
    with pytest.raises(SourceNotFoundError, match="did you mean 'shop'"):
        store.require_source("shpo")
    assert store.get_source("nothing") is None


def test_a_removed_source_can_be_added_again(store: SourceStore) -> None:
    store.create_source(config())
    store.promote("shop", add(store, "title"))
    store.remove_source("shop")
    store.remove_source("shop")  # idempotent

    assert store.list_sources() == []
    assert store.get_source("shop").status is SourceStatus.REMOVED  # type: ignore[union-attr]
    with pytest.raises(SourceNotFoundError, match="was removed"):
        store.require_source("shop")

    store.create_source(config(url="https://shop.example/new"))
    revived = store.require_source("shop")
    assert (revived.status, revived.url, revived.active_version, revived.removed_at) == (
        SourceStatus.ONBOARDING,
        "https://shop.example/new",
        None,
        None,
    )
    # The old version is kept, numbering goes on, and rollback does not reach the old site.
    assert add(store, "title", "price") == 2
    store.promote("shop", 2)
    assert [v.version for v in store.list_versions("shop")] == [1, 2]
    assert store.rollback("shop") is None
    kinds = [e.kind for e in store.events("shop")]
    assert kinds.count("added") == 2 and "removed" in kinds


def test_status_changes_are_recorded_once(store: SourceStore) -> None:
    store.create_source(config())
    assert store.set_status("shop", SourceStatus.ACTIVE, "onboarded") is SourceStatus.ONBOARDING
    assert store.set_status("shop", SourceStatus.ACTIVE, "retry") is SourceStatus.ACTIVE
    store.append_event("shop", "health_changed", {"health": "ok", "at": datetime(2026, 1, 1)})

    events = store.events("shop")
    assert [e.kind for e in events] == ["added", "status_changed", "health_changed"]
    assert events[1].detail == {"from": "ONBOARDING", "to": "ACTIVE", "reason": "onboarded"}
    assert events[2].detail["at"] == "2026-01-01 00:00:00"
    assert all(e.at.tzinfo is not None for e in events)
    with pytest.raises(SourceNotFoundError):
        store.set_status("nope", SourceStatus.ACTIVE)


# --- versions ----------------------------------------------------------------------------------


def test_add_version_is_idempotent_and_numbers_increase(store: SourceStore, db: Database) -> None:
    store.create_source(config())
    first = store.add_version("shop", spec("title"), "heuristic", 0.7, "")
    again = store.add_version("shop", spec("title", notes="a retry"), "llm", 0.1, "other")
    second = store.add_version("shop", spec("title", "price"), "llm", 0.9, "", first.sha256)

    assert (first.version, again.version, second.version) == (1, 1, 2)
    assert again == first
    assert count(db, ScraperVersionRow.__table__) == 2
    assert second.parent_sha256 == first.sha256
    assert second.spec.meta.version == 2 and second.spec.meta.author == "llm"
    assert second.spec.sha256() == spec("title", "price").sha256()
    assert store.active_version("shop") is None

    report = ValidationReport(spec_sha=second.sha256, passed=True, total_records=12)
    store.set_report("shop", 2, report)
    assert store.get_version("shop", 2).report == report
    assert store.version_module("shop", 1) == ""
    with pytest.raises(VersionNotFoundError, match=r"versions: 1, 2"):
        store.get_version("shop", 7)
    with pytest.raises(SourceNotFoundError):
        store.add_version("ghost", spec("title"), "human", 1.0, "")


def test_concurrent_builds_get_distinct_version_numbers(store: SourceStore, db_url: str) -> None:
    store.create_source(config())
    other = Database(db_url)  # a second worker process on the same database
    try:
        versions = in_threads(
            lambda: store.add_version("shop", spec("a"), "heuristic", 0.5, "").version,
            lambda: SourceStore(other).add_version("shop", spec("b"), "llm", 0.5, "").version,
        )
    finally:
        other.dispose()
    assert sorted(versions) == [1, 2]


def test_promote_and_rollback(store: SourceStore) -> None:
    store.create_source(config())
    for fields in (("a",), ("a", "b"), ("a", "b", "c")):
        add(store, *fields)

    assert store.promote("shop", 1) is None
    assert store.promote("shop", 2) == 1
    assert store.promote("shop", 2) == 1  # a retried promotion reports the same
    assert [e.kind for e in store.events("shop")].count("version_promoted") == 2
    assert store.active_version("shop").version == 2  # type: ignore[union-attr]
    assert [v.active for v in store.list_versions("shop")] == [False, True, False]
    assert store.require_source("shop").active_version == 2

    assert store.promote("shop", 3) == 2
    assert store.rollback("shop", from_version=3) == 2
    assert store.rollback("shop", from_version=3) == 2  # a retry does not step back twice
    assert store.rollback("shop") == 1
    assert store.rollback("shop") is None
    assert store.active_version("shop").version == 1  # type: ignore[union-attr]
    # Rolled-back versions are kept and can be promoted again.
    assert store.promote("shop", 3) == 1
    with pytest.raises(VersionNotFoundError, match="no scraper version 9"):
        store.promote("shop", 9)


# --- bronze ------------------------------------------------------------------------------------


def test_bronze_pages_are_deduplicated(store: SourceStore, db: Database) -> None:
    body = b"<html>" + b"<li class=item>book</li>" * 200 + b"</html>"
    args: dict[str, Any] = {
        "source": "shop",
        "final_url": "https://shop.example/list?p=1",
        "status": 200,
        "headers": {"content-type": "text/html"},
        "content_type": "text/html",
        "rendered": False,
    }
    first = store.put_page(url="https://shop.example/list", body=body, run_id="r1", **args)
    again = store.put_page(url="https://shop.example/list", body=body, run_id="r2", **args)
    changed = store.put_page(url="https://shop.example/list", body=body + b"!", run_id="r2", **args)
    other_url = store.put_page(url="https://shop.example/b", body=body, run_id="r2", **args)

    assert again == first
    assert len({first.bronze_id, changed.bronze_id, other_url.bronze_id}) == 3
    assert count(db, BronzePageRow.__table__) == 3
    assert first.sha256 == hashlib.sha256(body).hexdigest() and first.size == len(body)
    assert first.fetched_at is not None and first.fetched_at.tzinfo is not None

    ref, stored = store.get_page(changed.bronze_id)
    assert (ref, stored) == (changed, body + b"!")
    assert store.get_page_body(first.bronze_id) == body
    with pytest.raises(PageNotFoundError):
        store.get_page_body(10_000)


# --- silver ------------------------------------------------------------------------------------


def books(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"isbn": isbn, "title": f"Book {isbn}", "price": price} for isbn, price in pairs]


def test_silver_upsert_counts_retries_and_per_run_records(store: SourceStore, db: Database) -> None:
    run1 = books(("1", 10.0), ("2", 20.0), ("3", 30.0))
    assert store.upsert_records("shop", "run-1", 1, run1, "isbn") == (3, 0, 0)
    # A retried activity: the same rows, the same counts.
    assert store.upsert_records("shop", "run-1", 1, run1, "isbn") == (3, 0, 0)

    # Book 1 unchanged, 2 repriced, 3 gone, 4 new (listed twice: the last copy wins).
    run2 = books(("4", 1.0), ("1", 10.0), ("2", 25.0), ("4", 40.0))
    assert store.upsert_records("shop", "run-2", 2, run2, "isbn") == (1, 1, 1)
    # On a retry the update already happened, so it counts as unchanged.
    assert store.upsert_records("shop", "run-2", 2, run2, "isbn") == (1, 0, 2)

    assert count(db, SilverRecordRow.__table__) == 4
    assert count(db, SilverObservationRow.__table__) == 6
    assert [r["isbn"] for r in store.records("shop", "run-1")] == ["1", "2", "3"]
    assert store.records("shop") == books(("4", 40.0), ("1", 10.0), ("2", 25.0))
    assert store.records("shop", "run-2", limit=1) == books(("4", 40.0))
    assert store.latest_run_id("shop") == "run-2"
    assert store.records("elsewhere") == []

    with db.engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(sa.select(SilverRecordRow.__table__)).mappings()}
    assert (rows["1"].first_run_id, rows["1"].run_id, rows["1"].scraper_version) == (
        "run-1",
        "run-2",
        1,
    )
    assert (rows["2"].run_id, rows["2"].scraper_version) == ("run-2", 2)
    assert rows["3"].run_id == "run-1"


def test_records_without_a_key_are_keyed_by_their_content(store: SourceStore, db: Database) -> None:
    records = [{"title": "A"}, {"title": "B"}, {"title": "A"}, {"isbn": "", "title": "C"}]
    assert store.upsert_records("shop", "r1", 1, records, None) == (3, 0, 0)
    assert store.upsert_records("shop", "r2", 1, [{"title": "A!"}], "isbn") == (1, 0, 0)

    with db.engine.connect() as conn:
        keys = set(conn.execute(sa.select(SilverRecordRow.key)).scalars())
    digest = hashlib.sha256(canonical_json({"title": "A"}).encode()).hexdigest()
    assert f"sha256:{digest}" in keys
    assert keys == {record_key(r, "isbn") for r in [*records, {"title": "A!"}]}
    assert len(keys) == 4
    assert record_key({"isbn": 978, "title": "x"}, "isbn") == "978"
    assert record_key({"isbn": "x" * 600}, "isbn").startswith("sha256:")


def test_concurrent_upserts_do_not_duplicate(store: SourceStore, db: Database, db_url: str) -> None:
    other = Database(db_url)
    try:
        stores = [store, SourceStore(other)]
        batches = [
            books(*((str(i), float(i)) for i in range(300))),
            books(*((str(i), float(i) + 0.5) for i in range(150, 450))),
        ]
        results = in_threads(
            *(
                lambda i=i: stores[i].upsert_records("shop", f"run-{i}", 1, batches[i], "isbn")
                for i in range(2)
            )
        )
    finally:
        other.dispose()
    assert count(db, SilverRecordRow.__table__) == 450
    assert count(db, SilverObservationRow.__table__) == 600
    # The two runs queued on the source's lock: each record counted as new exactly once.
    assert sum(inserted for inserted, _, _ in results) == 450
    assert sum(updated for _, updated, _ in results) == 150


# --- runs --------------------------------------------------------------------------------------


def test_runs_are_upserted_by_run_id(store: SourceStore, db: Database) -> None:
    start = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    for i in range(3):
        store.record_run(
            ScrapeStats(source="shop", run_id=f"r{i}", version=1, started_at=start + timedelta(i))
        )
    done = ScrapeStats(
        source="shop",
        run_id="r1",
        version=1,
        records=5,
        inserted=5,
        started_at=start + timedelta(1),
        ended_at=start + timedelta(1, 30),
        status="FAILED",
        error_type="SelectorDriftError",
    )
    store.record_run(done)

    assert count(db, SourceRunRow.__table__) == 3
    runs = store.runs("shop")
    assert [r.run_id for r in runs] == ["r2", "r1", "r0"]
    assert runs[1] == done
    assert [r.run_id for r in store.runs("shop", limit=1)] == ["r2"]
    assert store.runs("other") == []
