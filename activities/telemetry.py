"""Batched writes of task-attempt telemetry.

Writing one row per attempt start and end in its own transaction cost about as much as the
orchestration itself for short tasks (see docs/benchmarks.md). Rows are queued instead and
written by a background thread every ``flush_interval`` seconds in one upsert keyed by
(run, task, attempt), so a start and an end of the same attempt collapse into one write.

``flush()`` writes everything queued so far. A regular activity flushes its end before it
returns (it may run on another worker than the one recording the run), and ``record_run``
flushes before it stores a finished run, so a run's attempts are in the database by the
time the run is. Local activities, the short tasks, thus cost no write of their own. A worker
killed with SIGKILL loses at most the last interval's rows; the run itself is never lost
(Temporal holds it).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from activities.storage import Database

log = logging.getLogger(__name__)


class TelemetryWriter:
    """Queue task-attempt rows and write them in batches from a background thread."""

    def __init__(self, database: Database, flush_interval: float = 0.1) -> None:
        self.db = database
        self.flush_interval = flush_interval
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mendline-telemetry", daemon=True)
        self._thread.start()

    def record(self, **row: Any) -> None:
        """Queue one attempt row (all columns of ``task_attempts`` but ``id``)."""
        self._queue.put(row)

    def flush(self) -> int:
        """Write every queued row now; returns how many were written."""
        with self._write_lock:
            rows: list[dict[str, Any]] = []
            while True:
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not rows:
                return 0
            try:
                self.db.record_attempts(rows)
            except Exception:
                # Telemetry must never fail a task: put the rows back for the next flush.
                log.exception("writing %d telemetry rows failed; will retry", len(rows))
                for row in rows:
                    self._queue.put(row)
                return 0
            return len(rows)

    def close(self) -> None:
        """Stop the background thread after a final flush."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()
