"""What ``mendline report`` shows: a snapshot of runs, sources, incidents and decisions."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from models.incidents import Incident


class RunPoint(BaseModel):
    """One scrape run of a source."""

    at: datetime
    records: int
    status: str
    held: bool = False


class SourceMark(BaseModel):
    """Something that happened to a source: a repair, a promotion, a health change."""

    at: datetime
    kind: str
    label: str


class SourceHistory(BaseModel):
    """A source over the report's period."""

    name: str
    status: str
    active_version: int | None = None
    runs: list[RunPoint] = Field(default_factory=list)
    marks: list[SourceMark] = Field(default_factory=list)


class TaskLatency(BaseModel):
    """Latency percentiles and failures of one task."""

    pipeline: str
    task: str
    attempts: int
    failures: int
    p50: float
    p90: float
    p99: float


class ReportData(BaseModel):
    """Everything the HTML report draws."""

    generated_at: datetime
    since: datetime
    pipeline_runs: dict[str, int] = Field(default_factory=dict)
    sources: list[SourceHistory] = Field(default_factory=list)
    tasks: list[TaskLatency] = Field(default_factory=list)
    incidents: list[Incident] = Field(default_factory=list)
    decisions: dict[str, int] = Field(default_factory=dict)
