"""Storage of incidents and the alerts sent about them (SQLite or PostgreSQL).

The Monitor's activity turns an :class:`~models.incidents.EvaluationResult` into rows with
:meth:`IncidentStore.apply`; people list, show and resolve incidents through the CLI; the
remediation loop reads them as evidence. Methods are synchronous, one transaction each
(activities call them through ``asyncio.to_thread``), and every write an activity may retry
is idempotent: incidents are keyed by ``(fingerprint, opened_at)``, alerts by
``(fingerprint, kind, at)``.

Errors::

    IncidentStoreError
    └── IncidentNotFoundError   no incident with that id
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activities.storage import Database, as_utc, upsert, utcnow
from models.db_incidents import AlertRow, IncidentRow
from models.incidents import (
    Alert,
    AlertRecord,
    AlertState,
    Breach,
    Delivery,
    EvaluationResult,
    Incident,
    IncidentChange,
    IncidentStatus,
    OpenIncident,
)

AUTO_RESOLVER = "auto"
"""``resolved_by`` of incidents the evaluation resolved; anything else is a person."""


class IncidentStoreError(Exception):
    """Base of the incident store's errors."""


class IncidentNotFoundError(IncidentStoreError, LookupError):
    """No incident has the id; the message says how to list them."""

    def __init__(self, incident_id: int) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident {incident_id}; list them with `mendline incidents list`")


def _utc(value: datetime) -> datetime:
    """Stored and compared in UTC (SQLite keeps no offset, so all writes must agree)."""
    return value.astimezone(UTC)


def _read(value: datetime | None) -> datetime | None:
    return as_utc(value)


class IncidentStore:
    """Incidents and alerts in Mendline's database.

    Args:
        db: Mendline's database, migrated (``Database(url)`` migrates on open).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- the Monitor's side ------------------------------------------------------------------

    def reconcile(self, state: AlertState) -> AlertState:
        """Bring the evaluator's state in line with the stored incidents.

        Incidents resolved by hand leave ``open`` and their fingerprints are silenced;
        stored open incidents the state does not know (a lost or fresh state) are added,
        with the time of their last alert.
        """
        state = state.model_copy(deep=True)
        with self._db.session() as session:
            for fp, entry in list(state.open.items()):
                row = self._row(session, fp, entry.opened_at)
                if row is None or row.status == IncidentStatus.OPEN:
                    continue
                del state.open[fp]
                if row.resolved_by != AUTO_RESOLVER and fp not in state.silenced:
                    state.silenced.append(fp)
            open_rows = session.scalars(
                select(IncidentRow).where(IncidentRow.status == IncidentStatus.OPEN)
            )
            for row in open_rows:
                if row.fingerprint in state.open:
                    continue
                state.open[row.fingerprint] = OpenIncident.model_validate(
                    {
                        "rule": row.rule,
                        "metric": row.metric,
                        "severity": row.severity,
                        "labels": row.labels,
                        "opened_at": _read(row.opened_at),
                        "last_breach_at": _read(row.last_breach_at),
                        "alerts_sent": row.alerts_sent,
                    }
                )
                last = session.scalar(
                    select(func.max(AlertRow.at)).where(AlertRow.fingerprint == row.fingerprint)
                )
                if last is not None and row.fingerprint not in state.last_alert_at:
                    state.last_alert_at[row.fingerprint] = _read(last)  # type: ignore[assignment]
        return state

    def apply(self, result: EvaluationResult) -> list[Alert]:
        """Write an evaluation's incidents and alerts (idempotent).

        Returns:
            ``result.alerts_to_send`` with ``incident_id`` and ``alert_id`` filled in.
        """
        with self._db.session() as session:
            for change in result.incidents_opened:
                self._open(session, change)
            for change in result.incidents_updated:
                row = self._row(session, change.fingerprint, change.opened_at)
                if row is None:
                    row = self._open(session, change)
                elif row.status == IncidentStatus.OPEN:
                    self._refresh(row, change)
            for change in result.incidents_resolved:
                row = self._row(session, change.fingerprint, change.opened_at)
                if row is not None and row.status == IncidentStatus.OPEN:
                    row.status = IncidentStatus.RESOLVED
                    row.resolved_at = _utc(change.at)
                    row.resolved_by = AUTO_RESOLVER
                    row.resolution = change.resolution or "back to normal"
                    row.updated_at = _utc(change.at)
            return [self._record_alert(session, alert) for alert in result.alerts_to_send]

    def record_delivery(self, alert_id: int, delivery: Delivery) -> None:
        """Store (or replace) one notifier's outcome for an alert."""
        with self._db.session() as session:
            row = session.get(AlertRow, alert_id, with_for_update=True)
            if row is None:
                raise IncidentStoreError(f"no alert {alert_id}")
            kept = [d for d in row.deliveries if d.get("notifier") != delivery.notifier]
            row.deliveries = [*kept, delivery.model_dump(mode="json")]

    def _row(self, session: Session, fp: str, opened_at: datetime) -> IncidentRow | None:
        return session.scalar(
            select(IncidentRow).where(
                IncidentRow.fingerprint == fp, IncidentRow.opened_at == _utc(opened_at)
            )
        )

    def _open(self, session: Session, change: IncidentChange) -> IncidentRow:
        """Insert the incident (nothing if it exists) and return its row.

        If another incident of the fingerprint is still open (a state older than the
        store), that one is updated instead: one open incident per fingerprint.
        """
        other = session.scalar(
            select(IncidentRow).where(
                IncidentRow.fingerprint == change.fingerprint,
                IncidentRow.status == IncidentStatus.OPEN,
                IncidentRow.opened_at != _utc(change.opened_at),
            )
        )
        if other is not None:
            self._refresh(other, change)
            return other
        values = {
            "fingerprint": change.fingerprint,
            "rule": change.rule,
            "metric": str(change.metric),
            "severity": str(change.severity),
            "status": str(IncidentStatus.OPEN),
            "labels": dict(change.labels),
            "summary": change.summary,
            "breaches": _breaches(change.breaches),
            "opened_at": _utc(change.opened_at),
            "updated_at": _utc(change.at),
            "last_breach_at": _utc(change.at),
            "resolved_at": None,
            "resolved_by": None,
            "resolution": None,
            "alerts_sent": 0,
        }
        upsert(session, IncidentRow.__table__, [values], ["fingerprint", "opened_at"], update=[])  # type: ignore[arg-type]
        row = self._row(session, change.fingerprint, change.opened_at)
        assert row is not None
        return row

    @staticmethod
    def _refresh(row: IncidentRow, change: IncidentChange) -> None:
        row.summary = change.summary
        row.breaches = _breaches(change.breaches)
        row.severity = str(change.severity)
        row.last_breach_at = _utc(change.at)
        row.updated_at = _utc(change.at)

    def _record_alert(self, session: Session, alert: Alert) -> Alert:
        incident_id = None
        if alert.incident_opened_at is not None:
            row = self._row(session, alert.fingerprint, alert.incident_opened_at)
            if row is None or row.status != IncidentStatus.OPEN:
                # Opened under another time (see _open): the open one is the incident.
                row = session.scalar(
                    select(IncidentRow)
                    .where(IncidentRow.fingerprint == alert.fingerprint)
                    .order_by(IncidentRow.id.desc())
                    .limit(1)
                )
            incident_id = row.id if row is not None else None
        key = (AlertRow.fingerprint == alert.fingerprint, AlertRow.kind == str(alert.kind))
        existing = session.scalar(select(AlertRow.id).where(*key, AlertRow.at == _utc(alert.at)))
        if existing is None:
            session.add(
                AlertRow(
                    incident_id=incident_id,
                    fingerprint=alert.fingerprint,
                    rule=alert.rule,
                    kind=str(alert.kind),
                    severity=str(alert.severity),
                    at=_utc(alert.at),
                    title=alert.title,
                    payload=alert.model_dump(mode="json"),
                    deliveries=[],
                )
            )
            if incident_id is not None:
                incident = session.get(IncidentRow, incident_id)
                assert incident is not None
                incident.alerts_sent += 1
            session.flush()
            existing = session.scalar(
                select(AlertRow.id).where(*key, AlertRow.at == _utc(alert.at))
            )
        return alert.model_copy(update={"incident_id": incident_id, "alert_id": existing})

    # --- people's side -----------------------------------------------------------------------

    def incidents(self, *, open_only: bool = False, limit: int = 50) -> list[Incident]:
        """Incidents, newest first."""
        query = select(IncidentRow).order_by(IncidentRow.id.desc()).limit(limit)
        if open_only:
            query = query.where(IncidentRow.status == IncidentStatus.OPEN)
        with self._db.session() as session:
            return [_incident(row) for row in session.scalars(query)]

    def get(self, incident_id: int) -> Incident:
        """One incident.

        Raises:
            IncidentNotFoundError: No incident has the id.
        """
        with self._db.session() as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise IncidentNotFoundError(incident_id)
            return _incident(row)

    def alerts(self, incident_id: int) -> list[AlertRecord]:
        """The alerts sent about an incident, oldest first."""
        with self._db.session() as session:
            rows = session.scalars(
                select(AlertRow).where(AlertRow.incident_id == incident_id).order_by(AlertRow.id)
            )
            return [_alert_record(row) for row in rows]

    def resolve(
        self, incident_id: int, *, by: str, reason: str | None = None, at: datetime | None = None
    ) -> tuple[Incident, bool]:
        """Resolve an incident by hand.

        Returns:
            The incident and whether this call resolved it (False: it already was).

        Raises:
            IncidentNotFoundError: No incident has the id.
            ValueError: ``by`` is empty or the name reserved for automatic resolution.
        """
        if not by.strip() or by == AUTO_RESOLVER:
            raise ValueError(f"resolved_by must name a person, not {by!r}")
        with self._db.session() as session:
            row = session.get(IncidentRow, incident_id, with_for_update=True)
            if row is None:
                raise IncidentNotFoundError(incident_id)
            if row.status != IncidentStatus.OPEN:
                return _incident(row), False
            when = _utc(at or utcnow())
            row.status = IncidentStatus.RESOLVED
            row.resolved_at = when
            row.resolved_by = by
            row.resolution = reason or "resolved by hand"
            row.updated_at = when
            return _incident(row), True


def _breaches(breaches: Sequence[Breach]) -> list[dict[str, Any]]:
    return [b.model_dump(mode="json") for b in breaches]


def _incident(row: IncidentRow) -> Incident:
    return Incident.model_validate(
        {
            "id": row.id,
            "fingerprint": row.fingerprint,
            "rule": row.rule,
            "metric": row.metric,
            "severity": row.severity,
            "status": row.status,
            "labels": row.labels,
            "summary": row.summary,
            "breaches": row.breaches,
            "opened_at": _read(row.opened_at),
            "updated_at": _read(row.updated_at),
            "last_breach_at": _read(row.last_breach_at),
            "resolved_at": _read(row.resolved_at),
            "resolved_by": row.resolved_by,
            "resolution": row.resolution,
            "alerts_sent": row.alerts_sent,
        }
    )


def _alert_record(row: AlertRow) -> AlertRecord:
    return AlertRecord.model_validate(
        {
            "id": row.id,
            "incident_id": row.incident_id,
            "fingerprint": row.fingerprint,
            "rule": row.rule,
            "kind": row.kind,
            "severity": row.severity,
            "at": _read(row.at),
            "title": row.title,
            "deliveries": row.deliveries,
        }
    )
