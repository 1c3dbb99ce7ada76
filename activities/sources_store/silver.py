"""Silver records: merging a run's records by key and reading back what a run saw."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, select

from activities.sources_store.base import StoreBase, log
from activities.sources_store.helpers import (
    KEY_BATCH,
    canonical_json,
    record_key,
    sha256_hex,
    table_of,
)
from activities.storage import upsert, utcnow
from models.db_sources import SilverObservationRow, SilverRecordRow


class SilverMixin(StoreBase):
    """Merge and read silver records."""

    def upsert_records(
        self,
        source: str,
        run_id: str,
        version: int,
        records: list[dict[str, Any]],
        key_field: str | None,
    ) -> tuple[int, int, int]:
        """Merge a run's records into silver and note that the run saw them.

        Keys come from :func:`record_key`; a key repeated within ``records`` keeps the last
        record. A record whose data hash is unchanged only moves ``last_seen`` and ``run_id``.

        Idempotent: retrying the same call adds no row. On a retry, records this run first
        inserted still count as inserted, but ones the first attempt updated count as
        unchanged (their stored data already matches).

        Returns:
            ``(inserted, updated, unchanged)`` counts.
        """
        batch: dict[str, tuple[dict[str, Any], str]] = {}
        for record in records:
            data = json.loads(canonical_json(record))
            batch[record_key(data, key_field)] = (data, sha256_hex(canonical_json(data)))
        if not batch:
            return 0, 0, 0
        now, keys = utcnow(), list(batch)
        with self._locked(source) as session:
            stored: dict[str, tuple[str, str]] = {}
            for start in range(0, len(keys), KEY_BATCH):
                rows = session.execute(
                    select(
                        SilverRecordRow.key,
                        SilverRecordRow.data_sha256,
                        SilverRecordRow.first_run_id,
                    ).where(
                        SilverRecordRow.source == source,
                        SilverRecordRow.key.in_(keys[start : start + KEY_BATCH]),
                    )
                )
                stored.update({key: (digest, first) for key, digest, first in rows})
            changed, same = [], []
            inserted = updated = 0
            for key, (data, digest) in batch.items():
                row = {
                    "source": source,
                    "key": key,
                    "data": data,
                    "data_sha256": digest,
                    "first_seen": now,
                    "last_seen": now,
                    "scraper_version": version,
                    "run_id": run_id,
                    "first_run_id": run_id,
                }
                previous = stored.get(key)
                if previous is None or previous[1] == run_id:
                    inserted += 1
                elif previous[0] != digest:
                    updated += 1
                if previous is not None and previous[0] == digest:
                    same.append(row)
                else:
                    changed.append(row)
            table, unique = table_of(SilverRecordRow), ["source", "key"]
            moved = ["data", "data_sha256", "last_seen", "scraper_version", "run_id"]
            upsert(session, table, changed, unique, update=moved)
            upsert(session, table, same, unique, update=["last_seen", "run_id"])
            seen = [{"source": source, "run_id": run_id, "key": key} for key in keys]
            upsert(session, table_of(SilverObservationRow), seen, ["source", "run_id", "key"], [])
        unchanged = len(batch) - inserted - updated
        log.info(
            "source %s run %s: %d inserted, %d updated, %d unchanged",
            source,
            run_id,
            inserted,
            updated,
            unchanged,
        )
        return inserted, updated, unchanged

    def latest_run_id(self, source: str) -> str | None:
        """The newest run that stored records for the source, or None."""
        with self._db.session() as session:
            return session.scalar(
                select(SilverObservationRow.run_id)
                .where(SilverObservationRow.source == source)
                .order_by(SilverObservationRow.id.desc())
                .limit(1)
            )

    def records(
        self, source: str, run_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The records one run saw (the latest run when ``run_id`` is None), in the order
        it saw them, each with its current stored values."""
        run_id = run_id or self.latest_run_id(source)
        if run_id is None:
            return []
        stmt = (
            select(SilverRecordRow.data)
            .join(
                SilverObservationRow,
                and_(
                    SilverObservationRow.source == SilverRecordRow.source,
                    SilverObservationRow.key == SilverRecordRow.key,
                ),
            )
            .where(SilverObservationRow.source == source, SilverObservationRow.run_id == run_id)
            .order_by(SilverObservationRow.id)
            .limit(limit)
        )
        with self._db.session() as session:
            return list(session.scalars(stmt))
