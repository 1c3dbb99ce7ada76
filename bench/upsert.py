"""Cost of ``activities.storage.upsert``: the cached single-row statement against the
multi-row ``VALUES`` statement it replaced (the baseline, measured in the same run).

Every supervised run, telemetry batch and cache write goes through ``upsert``. Profiling the
1,000-source bench showed about 40 % of the worker's CPU in SQLAlchemy compiling a new
multi-row ``INSERT … VALUES (…), (…) ON CONFLICT …`` for every call. ``upsert`` now builds one
single-row statement per table shape (cached) and executes it with all the rows, so it is
compiled once and the driver batches the rows.

Each call writes ``--rows`` rows (24 by default: a demo listing page) into a two-column-key
table in its own transaction, half of them updates of earlier rows::

    .venv/bin/python -m bench.upsert --calls 1000 --out bench/results/upsert.json
    .venv/bin/python -m bench.upsert --database postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from activities.storage import upsert
from bench.common import machine_info

Upsert = Callable[[Connection, Table, Sequence[Mapping[str, Any]], Sequence[str]], None]


def multi_row_values(
    conn: Connection, table: Table, values: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    """The baseline: what ``upsert`` did before — one multi-row statement per call."""
    insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    update = [c for c in values[0] if c not in keys]
    stmt = insert(table).values(list(values))
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    )
    conn.execute(stmt)


def run(url: str, calls: int, rows: int, variant: Upsert) -> float:
    """Calls per second of ``variant`` on a fresh table."""
    engine = create_engine(url)
    metadata = MetaData()
    table = Table(
        "bench_upsert",
        metadata,
        Column("source", String, primary_key=True),
        Column("key", String, primary_key=True),
        Column("data", JSON),
        Column("run", Integer),
    )
    metadata.drop_all(engine)
    metadata.create_all(engine)
    try:
        batches = [
            [
                {
                    "source": f"s{call % 50}",
                    "key": f"k{(call // 50) % 2 * rows + j}",
                    "data": {"title": f"item {j}", "price": j * 1.5},
                    "run": call,
                }
                for j in range(rows)
            ]
            for call in range(calls)
        ]
        started = time.perf_counter()
        for batch in batches:
            with engine.begin() as conn:
                variant(conn, table, batch, ["source", "key"])
        return calls / (time.perf_counter() - started)
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best kept")
    parser.add_argument("--database", action="append", help="SQLAlchemy URLs (default: SQLite)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = args.database or [f"sqlite:///{tmp}/bench.db"]
        results: dict[str, Any] = {
            "machine": machine_info(),
            "calls": args.calls,
            "rows": args.rows,
        }
        for url in urls:
            dialect = url.split(":", 1)[0]
            best = {"multi_row_values": 0.0, "cached_single_row": 0.0}
            for _ in range(args.rounds):  # alternate, so drift on a noisy machine hits both
                best["multi_row_values"] = max(
                    best["multi_row_values"], run(url, args.calls, args.rows, multi_row_values)
                )
                best["cached_single_row"] = max(
                    best["cached_single_row"], run(url, args.calls, args.rows, upsert)
                )
            ratio = best["cached_single_row"] / best["multi_row_values"]
            results[dialect] = {**best, "speedup": ratio}
            print(
                f"{dialect:20} baseline {best['multi_row_values']:7.0f} calls/s   "
                f"upsert {best['cached_single_row']:7.0f} calls/s   ×{ratio:.2f}"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
