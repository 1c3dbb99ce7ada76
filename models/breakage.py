"""What one scrape run says about a source: :func:`assess_run` and its :class:`Baseline`.

Pure and deterministic (no I/O, no clock) so it can run inside workflow code. It classifies
a hard failure (:class:`RunFailure`) or the :class:`~models.sources.ScrapeStats` of a run
that "succeeded" against a baseline learned from the last good runs, and says whether the
source is fine, suspicious, broken by site drift (a repair may help) or transiently
unreachable. :mod:`models.health` turns these assessments into health states.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum
from statistics import median
from typing import Literal

from pydantic import BaseModel, Field

from models.scraper import Expectations
from models.sources import ScrapeStats

MAD_TO_SIGMA = 1.4826
"""Scales a median absolute deviation to a standard deviation for normally spread counts."""
FILL_ESTABLISHED = 0.8
"""A field filled at least this often is one the source reliably has..."""
FILL_COLLAPSED = 0.3
"""...and falling below this share means its selector no longer finds it."""
FILL_PRESENT = 0.3
"""A field filled at least this often that drops to exactly 0 has collapsed too."""
MESSAGE_CHARS = 300

Verdict = Literal["ok", "suspicious", "broken", "transient"]
RepairOutcome = Literal["promoted", "rolled_back", "failed"]


class BreakageKind(StrEnum):
    """What went wrong in a run (``none`` when nothing did)."""

    NONE = "none"
    NETWORK = "network"
    TIMEOUT = "timeout"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"
    PARSE_ERROR = "parse_error"
    ZERO_RECORDS = "zero_records"
    COUNT_ANOMALY = "count_anomaly"
    FILL_RATE_COLLAPSE = "fill_rate_collapse"
    DUPLICATE_KEYS = "duplicate_keys"
    CONFIG = "config"
    UNKNOWN = "unknown"
    """A failure of a type this module does not know: a strike, but neither retried as
    transient nor repaired, until someone classifies it."""


TRANSIENT_KINDS = frozenset(
    {BreakageKind.NETWORK, BreakageKind.TIMEOUT, BreakageKind.HTTP_5XX, BreakageKind.RATE_LIMITED}
)
DRIFT_KINDS = frozenset(
    {BreakageKind.PARSE_ERROR, BreakageKind.ZERO_RECORDS, BreakageKind.FILL_RATE_COLLAPSE}
)
"""Kinds a scraper repair can fix: the site still answers but its layout changed."""

# error_class values of activities.fetch.errors (the activity puts it in the failure details).
_CLASS_KINDS = {
    "network": BreakageKind.NETWORK,
    "dns": BreakageKind.NETWORK,
    # A browser crash is our infrastructure failing, not the site drifting.
    "render": BreakageKind.NETWORK,
    "timeout": BreakageKind.TIMEOUT,
    "http_5xx": BreakageKind.HTTP_5XX,
    "rate_limited": BreakageKind.RATE_LIMITED,
    "blocked": BreakageKind.BLOCKED,
    "http_4xx": BreakageKind.HTTP_4XX,
    "not_html": BreakageKind.CONFIG,
    "too_large": BreakageKind.CONFIG,
    "robots": BreakageKind.CONFIG,
    "ssrf": BreakageKind.CONFIG,
    "invalid_url": BreakageKind.CONFIG,
}
# ApplicationError types, for failures that arrive without an error_class.
_TYPE_KINDS = {
    "FetchConnectError": BreakageKind.NETWORK,
    "FetchDnsError": BreakageKind.NETWORK,
    # A redirect loop is a site misconfiguration no repair fixes; sites fix it themselves.
    "TooManyRedirectsError": BreakageKind.NETWORK,
    "RenderError": BreakageKind.NETWORK,
    "FetchTimeoutError": BreakageKind.TIMEOUT,
    "TimeoutError": BreakageKind.TIMEOUT,  # a Temporal activity timeout
    "InvalidUrlError": BreakageKind.CONFIG,
    "UrlNotAllowedError": BreakageKind.CONFIG,
    "RobotsDisallowedError": BreakageKind.CONFIG,
    "NotHtmlError": BreakageKind.CONFIG,
    "BodyTooLargeError": BreakageKind.CONFIG,
    "SourceNotFoundError": BreakageKind.CONFIG,
    "NoActiveScraperError": BreakageKind.CONFIG,
    "VersionNotFoundError": BreakageKind.CONFIG,
    "NoRecordsFoundError": BreakageKind.ZERO_RECORDS,
    "SpecError": BreakageKind.PARSE_ERROR,
    "SelectorDriftError": BreakageKind.PARSE_ERROR,
    "SelectorNotFoundError": BreakageKind.PARSE_ERROR,
    "ExampleNotFoundError": BreakageKind.PARSE_ERROR,
    "ScoutError": BreakageKind.PARSE_ERROR,
    "DocumentError": BreakageKind.PARSE_ERROR,
    "DocumentTooLargeError": BreakageKind.PARSE_ERROR,
    "DocumentTooComplexError": BreakageKind.PARSE_ERROR,
    "SandboxTimeoutError": BreakageKind.PARSE_ERROR,
    "SandboxMemoryError": BreakageKind.PARSE_ERROR,
    "SandboxCrashError": BreakageKind.PARSE_ERROR,
}
_BLOCK_WORDS = ("captcha", "anti-bot", "challenge")
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


class RunFailure(BaseModel):
    """A run that did not complete: the failure as the activity reported it.

    Attributes:
        error_type: The ``ApplicationError`` type (``FetchConnectError``, ``SpecError``…).
        error_class: The fetch layer's label (``network``, ``blocked``…), when known.
        message: The failure message.
        status: The HTTP status, for HTTP errors.
    """

    error_type: str
    error_class: str | None = None
    message: str = ""
    status: int | None = None

    @classmethod
    def from_stats(cls, stats: ScrapeStats) -> RunFailure:
        """The failure recorded in the stats of a ``FAILED`` run."""
        return cls(error_type=stats.error_type or "UnknownError", message=stats.error or "")


class RunAssessment(BaseModel):
    """What one run says about a source.

    Attributes:
        verdict: ``ok``, ``suspicious`` (odd but maybe real), ``broken`` or ``transient``.
        kind: The main problem (the most severe one when there are several).
        transient: The site was unreachable for a passing reason; never a repair attempt.
        needs_repair: The site answers but the scraper no longer reads it (drift).
        reasons: Human sentences with the numbers behind the verdict.
    """

    verdict: Verdict = "ok"
    kind: BreakageKind = BreakageKind.NONE
    transient: bool = False
    needs_repair: bool = False
    reasons: list[str] = Field(default_factory=list)

    @property
    def summary(self) -> str:
        """The reasons as one line."""
        return "; ".join(self.reasons) or self.verdict


class Baseline(BaseModel):
    """What a healthy run of a source looks like, learned from its last good runs.

    With fewer than two good runs nothing can be learned, and the scraper's own thresholds
    (``min_records``, ``max_records``, ``min_fill_rates``) are used instead.

    Attributes:
        runs: Good runs learned from (0 or 1: thresholds mode).
        seen_min: Fewest records of a good run.
        seen_max: Most records of a good run.
        low: Fewest records tolerated (robust: median − k·MAD, and never above ``seen_min``).
        high: Most records tolerated (median + k·MAD, and never below ``seen_max``).
        typical_fill_rates: Per field, the median fill rate of the good runs.
        max_duplicate_keys: Most duplicate keys a good run had.
        min_records: Thresholds mode: fewest records of a healthy run.
        max_records: Thresholds mode: most records per page (``None``: no limit).
        min_fill_rates: Thresholds mode: least fill rate per field.
    """

    runs: int = 0
    seen_min: int = 0
    seen_max: int = 0
    low: int = 0
    high: int = 0
    typical_fill_rates: dict[str, float] = Field(default_factory=dict)
    max_duplicate_keys: int = 0
    min_records: int = 1
    max_records: int | None = None
    min_fill_rates: dict[str, float] = Field(default_factory=dict)

    @property
    def learned(self) -> bool:
        """Whether the baseline comes from run history rather than the scraper's thresholds."""
        return self.runs >= 2

    @classmethod
    def from_runs(
        cls,
        runs: Sequence[ScrapeStats],
        *,
        window: int = 10,
        expectations: Expectations | None = None,
        k: float = 3.0,
        min_spread: float = 2.0,
        min_relative_spread: float = 0.1,
    ) -> Baseline:
        """Learn a baseline from run history (oldest first).

        Failed runs and runs without records are skipped; pass only runs that were assessed
        ``ok`` so that a slow drift cannot teach the baseline to accept it.

        Args:
            runs: Past runs, oldest first; the last ``window`` good ones are used.
            window: How many good runs to learn from.
            expectations: The scraper's thresholds, used while fewer than 2 good runs exist.
            k: Width of the tolerated range in (MAD-estimated) standard deviations.
            min_spread: Floor of the spread in records, so a source that always gives
                exactly 24 records tolerates some variation.
            min_relative_spread: Floor of the spread as a share of the median.
        """
        if window < 1:
            raise ValueError(f"Baseline.from_runs: window must be at least 1, got {window}")
        good = [r for r in runs if r.status == "SUCCEEDED" and r.records > 0][-window:]
        thresholds = expectations or Expectations()
        base = cls(
            runs=len(good),
            min_records=thresholds.min_records,
            max_records=thresholds.max_records,
            min_fill_rates=dict(thresholds.fill_rates),
        )
        if not good:
            return base
        counts = [r.records for r in good]
        mid = median(counts)
        mad = median(abs(c - mid) for c in counts)
        spread = max(MAD_TO_SIGMA * mad, min_spread, min_relative_spread * mid)
        fields = sorted({name for r in good for name in r.fill_rates})
        return base.model_copy(
            update={
                "seen_min": min(counts),
                "seen_max": max(counts),
                # Counts already seen in good runs are never flagged: a history holding one
                # big catalogue day must not make that day's size an anomaly next time.
                "low": min(max(0, math.floor(mid - k * spread)), min(counts)),
                "high": max(math.ceil(mid + k * spread), max(counts)),
                "typical_fill_rates": {
                    name: median(r.fill_rates[name] for r in good if name in r.fill_rates)
                    for name in fields
                },
                "max_duplicate_keys": max(r.duplicate_keys for r in good),
            }
        )

    def expected_text(self) -> str:
        """The expected record count in words, e.g. ``expected 20–28 from the last 10 good runs``."""
        if self.learned:
            return f"expected {self.seen_min}–{self.seen_max} from the last {self.runs} good runs"
        if self.max_records is not None:
            return f"the scraper expects {self.min_records}–{self.max_records} per page"
        return f"the scraper expects at least {self.min_records}"


def assess_run(
    stats: ScrapeStats | None, failure: RunFailure | None, baseline: Baseline
) -> RunAssessment:
    """Classify one run of a source.

    Args:
        stats: What the run did (``None`` when it failed before producing stats).
        failure: The failure of a run that did not complete (``None`` when it did). A
            ``FAILED`` ``stats`` without a ``failure`` is read as one.
        baseline: What a healthy run looks like.

    Returns:
        The verdict, the main kind of breakage, and reasons naming the numbers.

    Raises:
        ValueError: Neither stats nor a failure was given.
    """
    if failure is None and stats is not None and stats.status == "FAILED":
        failure = RunFailure.from_stats(stats)
    if failure is not None:
        return _assess_failure(failure)
    if stats is None:
        raise ValueError("assess_run needs the run's stats, its failure, or both; got neither")
    findings = _stats_findings(stats, baseline)
    if not findings:
        return RunAssessment()
    # The first broken finding wins over suspicious ones; all reasons are kept.
    main = next((f for f in findings if f[1] == "broken"), findings[0])
    return RunAssessment(
        verdict=main[1],
        kind=main[0],
        needs_repair=any(f[1] == "broken" and f[0] in DRIFT_KINDS for f in findings),
        reasons=[f[2] for f in findings],
    )


def classify_failure(failure: RunFailure) -> BreakageKind:
    """The kind of a hard failure, from its error class, HTTP status and error type."""
    status = failure.status
    if status is None and (match := _HTTP_STATUS.search(failure.message)):
        status = int(match.group(1))
    kind = _CLASS_KINDS.get(failure.error_class or "") or _TYPE_KINDS.get(failure.error_type)
    if status is not None and kind in (None, BreakageKind.HTTP_4XX, BreakageKind.HTTP_5XX):
        if status == 429:
            return BreakageKind.RATE_LIMITED
        if status == 408:
            return BreakageKind.TIMEOUT
        if status >= 500:
            return BreakageKind.HTTP_5XX
        if status in (401, 403) and any(w in failure.message.lower() for w in _BLOCK_WORDS):
            return BreakageKind.BLOCKED
        if status >= 400:
            return BreakageKind.HTTP_4XX
    return kind or BreakageKind.UNKNOWN


def _assess_failure(failure: RunFailure) -> RunAssessment:
    kind = classify_failure(failure)
    label = failure.error_type
    if failure.status is not None:
        label = f"HTTP {failure.status} ({label})"
    elif failure.error_class:
        label = f"{label} ({failure.error_class})"
    message = failure.message.strip()
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    head = f"{label}: {message}" if message else label
    if kind in TRANSIENT_KINDS:
        advice = "a transient failure: it counts as a strike, never as a repair attempt"
        return RunAssessment(
            verdict="transient", kind=kind, transient=True, reasons=[f"{head}; {advice}"]
        )
    advice = {
        BreakageKind.BLOCKED: "the site blocks Mendline with an anti-bot challenge; a repair "
        "cannot fix that — ask the site for access or an API",
        BreakageKind.HTTP_4XX: "the site refuses the request; check the source URL and access",
        BreakageKind.CONFIG: "the source's configuration prevents the run; fix its settings, "
        "a scraper repair cannot help",
        BreakageKind.PARSE_ERROR: "the scraper no longer reads the page; the site layout "
        "probably changed",
        BreakageKind.ZERO_RECORDS: "the scraper finds no records on the page; the site layout "
        "probably changed",
    }.get(kind, "an unclassified failure: it counts as a strike; look at the run's error")
    return RunAssessment(
        verdict="broken", kind=kind, needs_repair=kind in DRIFT_KINDS, reasons=[f"{head}; {advice}"]
    )


_Finding = tuple[BreakageKind, Verdict, str]


def _stats_findings(stats: ScrapeStats, baseline: Baseline) -> list[_Finding]:
    if stats.records == 0:
        return [_zero_records(stats, baseline)]
    return [
        *_fill_findings(stats, baseline),
        *_count_findings(stats, baseline),
        *_duplicate_findings(stats, baseline),
    ]


def _zero_records(stats: ScrapeStats, baseline: Baseline) -> _Finding:
    expected = baseline.expected_text()
    if stats.http_statuses:
        answered = sum(
            n
            for code, n in stats.http_statuses.items()
            # 204 and 205 carry no body by definition: nothing there to extract.
            if code.isdigit() and 200 <= int(code) < 300 and int(code) not in (204, 205)
        )
    else:
        answered = stats.pages
    if answered == 0:
        shown = ", ".join(f"HTTP {c} ×{n}" for c, n in sorted(stats.http_statuses.items()))
        detail = f"no page answered with content ({shown or 'no page fetched'})"
        return BreakageKind.ZERO_RECORDS, "suspicious", f"records 0 ({expected}); {detail}"
    pages = "page" if answered == 1 else "pages"
    return (
        BreakageKind.ZERO_RECORDS,
        "broken",
        f"records 0 ({expected}) although {answered} {pages} answered HTTP 200: the content "
        f"is there but the scraper extracts nothing",
    )


def _count_findings(stats: ScrapeStats, baseline: Baseline) -> list[_Finding]:
    n = stats.records
    if baseline.learned:
        if baseline.low <= n <= baseline.high:
            return []
        side = (
            f"below the tolerated {baseline.low}"
            if n < baseline.low
            else f"above the tolerated {baseline.high}"
        )
        return [
            (
                BreakageKind.COUNT_ANOMALY,
                "suspicious",
                f"records {n} ({baseline.expected_text()}; {side})",
            )
        ]
    limit = baseline.max_records * max(stats.pages, 1) if baseline.max_records is not None else None
    if n < baseline.min_records or (limit is not None and n > limit):
        return [
            (BreakageKind.COUNT_ANOMALY, "suspicious", f"records {n} ({baseline.expected_text()})")
        ]
    return []


def _fill_findings(stats: ScrapeStats, baseline: Baseline) -> list[_Finding]:
    rates = stats.fill_rates
    if rates and all(rate == 0 for rate in rates.values()):
        fields = ", ".join(sorted(rates))
        return [
            (
                BreakageKind.FILL_RATE_COLLAPSE,
                "broken",
                f"{stats.records} records but every field is empty ({fields}): records are "
                f"found but nothing is extracted from them",
            )
        ]
    findings: list[_Finding] = []
    reference = baseline.typical_fill_rates if baseline.learned else baseline.min_fill_rates
    for name in sorted(reference.keys() & rates.keys()):
        was, now = reference[name], rates[name]
        collapsed = (was >= FILL_ESTABLISHED and now < FILL_COLLAPSED) or (
            was >= FILL_PRESENT and now == 0
        )
        if baseline.learned:
            basis = f"was {was:.0%} over the last {baseline.runs} good runs"
        else:
            basis = f"the scraper expects at least {was:.0%}"
        reason = f"field {name!r} filled in {now:.0%} of records ({basis})"
        if collapsed:
            findings.append((BreakageKind.FILL_RATE_COLLAPSE, "broken", reason))
        elif not baseline.learned and now < was:
            findings.append((BreakageKind.FILL_RATE_COLLAPSE, "suspicious", reason))
    return findings


def _duplicate_findings(stats: ScrapeStats, baseline: Baseline) -> list[_Finding]:
    dups = stats.duplicate_keys
    allowed = baseline.max_duplicate_keys if baseline.learned else 0
    if dups <= allowed:
        return []
    before = (
        f"at most {allowed} in the last {baseline.runs} good runs"
        if baseline.learned
        else "none expected"
    )
    return [
        (
            BreakageKind.DUPLICATE_KEYS,
            "suspicious",
            f"{dups} duplicate {'key' if dups == 1 else 'keys'} among {stats.records} records "
            f"({before})",
        )
    ]
