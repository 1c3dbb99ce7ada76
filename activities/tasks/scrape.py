"""The ``scrape`` task: run a source's active scraper inside a pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from activities.tasks.base import HandlerOutput, TaskConfigError, TaskContext, TaskHandler, require


class SourceScraper(Protocol):
    """What the worker wires under ``resources["sources"]`` (``SourceActivities``)."""

    async def scrape(
        self, source_name: str, run_id: str, version: int | None = None
    ) -> tuple[Any, list[dict[str, Any]]]: ...


class ScrapeHandler(TaskHandler):
    """Scrape a source with its active scraper and output its records.

    Bronze (raw pages) and silver (records upserted by key) are written as in
    ``mendline source run``, so a retried task never duplicates a record.

    Params:
        source (string, required): Name of a source onboarded with ``mendline source add``.
        version (int, optional): Run this scraper version instead of the active one.

    Output:
        ``{"source": name, "version": n, "records": [...], "count": n, "stats": {...}}`` —
        each record carries its page in ``_url``; ``stats`` has pages, inserted, updated,
        unchanged and fill rates.

    Errors:
        ``NoActiveScraperError`` / ``SourceNotFoundError`` (not retried); fetch errors are
        retried unless permanent (blocked URL, robots, not HTML).
    """

    type_name = "scrape"
    description = "Run a source's active scraper and output its records."

    def check_params(self, params: Mapping[str, Any]) -> None:
        require(params, "source", str, self.type_name)
        version = params.get("version")
        if version is not None and (not isinstance(version, int) or version < 1):
            raise TaskConfigError(
                f"scrape task param 'version' must be a positive integer, got {version!r}"
            )

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> HandlerOutput:
        sources: SourceScraper | None = ctx.resources.get("sources")
        if sources is None:
            raise TaskConfigError(
                "this worker has no sources service wired; run the task on a Mendline worker"
            )
        stats, records = await sources.scrape(
            params["source"], f"{ctx.run_id}/{ctx.task}", params.get("version")
        )
        value = {
            "source": params["source"],
            "version": stats.version,
            "records": records,
            "count": len(records),
            "stats": stats.model_dump(mode="json", exclude={"sample"}),
        }
        return HandlerOutput(value, records_out=len(records))
