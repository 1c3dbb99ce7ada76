"""Source health: how runs are classified, and the state a sequence of runs leaves a source in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from models.health import (
    Baseline,
    BreakageKind,
    HealthError,
    HealthState,
    HealthTransition,
    RepairOutcome,
    RunAssessment,
    RunFailure,
    SourceHealth,
    assess_run,
)
from models.scraper import Expectations
from models.sources import ScrapeStats

T0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
HISTORY_COUNTS = [24, 22, 25, 23, 24, 26, 20, 28, 24, 25]
TYPICAL_FILL = {"title": 1.0, "price": 0.95, "rating": 0.6}


def run(records: int = 24, **fields: Any) -> ScrapeStats:
    """Stats of one single-page run that answered HTTP 200."""
    values: dict[str, Any] = {
        "source": "books",
        "run_id": f"run-{records}",
        "version": 1,
        "pages": 1,
        "records": records,
        "fill_rates": dict(TYPICAL_FILL),
        "http_statuses": {"200": 1},
    }
    values.update(fields)
    return ScrapeStats(**values)


@pytest.fixture(scope="module")
def learned() -> Baseline:
    """A baseline from 10 good runs of 20–28 records (median 24, MAD 1)."""
    return Baseline.from_runs([run(n) for n in HISTORY_COUNTS])


@pytest.fixture(scope="module")
def thresholds() -> Baseline:
    """A freshly onboarded source: no history, only the scraper's expectations."""
    expectations = Expectations(
        min_records=5, max_records=30, fill_rates={"title": 0.9, "price": 0.5}
    )
    return Baseline.from_runs([], expectations=expectations)


# --- baselines -------------------------------------------------------------------------------


def test_baseline_learns_a_robust_count_range_and_typical_fill_rates(learned: Baseline) -> None:
    assert learned.learned
    assert (learned.runs, learned.seen_min, learned.seen_max) == (10, 20, 28)
    # median 24, spread max(1.4826·MAD=1.48, 2, 10% of 24=2.4) = 2.4; 24 ± 3·2.4
    assert (learned.low, learned.high) == (16, 32)
    assert learned.typical_fill_rates == TYPICAL_FILL
    assert learned.max_duplicate_keys == 0
    assert learned.expected_text() == "expected 20–28 from the last 10 good runs"


def test_baseline_uses_the_last_window_of_good_runs_only() -> None:
    history = (
        [run(500) for _ in range(5)]  # an old catalogue size, pushed out of the window
        + [run(0), run(24, status="FAILED", error_type="FetchConnectError")]
        + [run(n) for n in (10, 11, 12)]
    )
    baseline = Baseline.from_runs(history, window=3)
    assert (baseline.runs, baseline.seen_min, baseline.seen_max) == (3, 10, 12)
    # median 11; the floor spread of 2 records wins over MAD and 10%: 11 ± 6
    assert (baseline.low, baseline.high) == (5, 17)


def test_one_odd_good_run_does_not_widen_the_tolerated_range_beyond_itself() -> None:
    baseline = Baseline.from_runs([run(n) for n in [24] * 9 + [90]])
    assert (baseline.seen_min, baseline.seen_max) == (24, 90)
    assert baseline.low == 16  # median 24 and MAD 0: the outlier does not drag the floor
    assert baseline.high == 90  # a size already seen in a good run is never an anomaly
    assert assess_run(run(12), None, baseline).kind == BreakageKind.COUNT_ANOMALY


def test_fill_rates_are_the_median_per_field_so_one_bad_run_does_not_move_them() -> None:
    history = [run(24, fill_rates={"price": 0.9})] * 4 + [run(24, fill_rates={"price": 0.0})]
    assert Baseline.from_runs(history).typical_fill_rates == {"price": 0.9}


def test_fewer_than_two_good_runs_fall_back_to_the_scrapers_thresholds(
    thresholds: Baseline,
) -> None:
    assert not thresholds.learned
    assert (thresholds.min_records, thresholds.max_records) == (5, 30)
    assert thresholds.min_fill_rates == {"title": 0.9, "price": 0.5}
    one_run = Baseline.from_runs([run(24)])
    assert not one_run.learned
    assert one_run.expected_text() == "the scraper expects at least 1"


def test_window_must_hold_at_least_one_run() -> None:
    with pytest.raises(ValueError, match="window must be at least 1, got 0"):
        Baseline.from_runs([run(24)], window=0)


# --- silent breakage from stats --------------------------------------------------------------

EXPECTED = "expected 20–28 from the last 10 good runs"


@pytest.mark.parametrize(
    ("stats", "verdict", "kind", "needs_repair", "reasons"),
    [
        pytest.param(run(24), "ok", BreakageKind.NONE, False, [], id="ok"),
        pytest.param(run(30), "ok", BreakageKind.NONE, False, [], id="count-within-tolerance"),
        pytest.param(
            run(0, fill_rates={"title": 0.0, "price": 0.0, "rating": 0.0}),
            "broken",
            BreakageKind.ZERO_RECORDS,
            True,
            [
                f"records 0 ({EXPECTED}) although 1 page answered HTTP 200: the content is "
                "there but the scraper extracts nothing"
            ],
            id="zero-records-on-200",
        ),
        pytest.param(
            run(0, pages=3, http_statuses={"200": 3}),
            "broken",
            BreakageKind.ZERO_RECORDS,
            True,
            [
                f"records 0 ({EXPECTED}) although 3 pages answered HTTP 200: the content is "
                "there but the scraper extracts nothing"
            ],
            id="zero-records-on-3-pages",
        ),
        pytest.param(
            run(0, http_statuses={"204": 1}),
            "suspicious",
            BreakageKind.ZERO_RECORDS,
            False,
            [f"records 0 ({EXPECTED}); no page answered with content (HTTP 204 ×1)"],
            id="zero-records-without-content",
        ),
        pytest.param(
            run(9),
            "suspicious",
            BreakageKind.COUNT_ANOMALY,
            False,
            [f"records 9 ({EXPECTED}; below the tolerated 16)"],
            id="count-too-low",
        ),
        pytest.param(
            run(40),
            "suspicious",
            BreakageKind.COUNT_ANOMALY,
            False,
            [f"records 40 ({EXPECTED}; above the tolerated 32)"],
            id="count-too-high",
        ),
        pytest.param(
            run(24, fill_rates={"title": 1.0, "price": 0.1, "rating": 0.6}),
            "broken",
            BreakageKind.FILL_RATE_COLLAPSE,
            True,
            ["field 'price' filled in 10% of records (was 95% over the last 10 good runs)"],
            id="fill-rate-collapse",
        ),
        pytest.param(
            run(24, fill_rates={"title": 1.0, "price": 0.95, "rating": 0.0}),
            "broken",
            BreakageKind.FILL_RATE_COLLAPSE,
            True,
            ["field 'rating' filled in 0% of records (was 60% over the last 10 good runs)"],
            id="optional-field-vanishes",
        ),
        pytest.param(
            run(24, fill_rates={"title": 1.0, "price": 0.95, "rating": 0.2}),
            "ok",
            BreakageKind.NONE,
            False,
            [],
            id="optional-field-thins-out",
        ),
        pytest.param(
            run(24, fill_rates={"title": 0.0, "price": 0.0, "rating": 0.0}),
            "broken",
            BreakageKind.FILL_RATE_COLLAPSE,
            True,
            [
                "24 records but every field is empty (price, rating, title): records are "
                "found but nothing is extracted from them"
            ],
            id="content-present-extraction-empty",
        ),
        pytest.param(
            run(24, duplicate_keys=5),
            "suspicious",
            BreakageKind.DUPLICATE_KEYS,
            False,
            ["5 duplicate keys among 24 records (at most 0 in the last 10 good runs)"],
            id="duplicate-keys",
        ),
        pytest.param(
            run(9, fill_rates={"title": 0.2, "price": 0.95, "rating": 0.6}, duplicate_keys=1),
            "broken",
            BreakageKind.FILL_RATE_COLLAPSE,
            True,
            [
                "field 'title' filled in 20% of records (was 100% over the last 10 good runs)",
                f"records 9 ({EXPECTED}; below the tolerated 16)",
                "1 duplicate key among 9 records (at most 0 in the last 10 good runs)",
            ],
            id="several-problems-broken-wins",
        ),
    ],
)
def test_stats_against_a_learned_baseline(
    learned: Baseline,
    stats: ScrapeStats,
    verdict: str,
    kind: BreakageKind,
    needs_repair: bool,
    reasons: list[str],
) -> None:
    assessment = assess_run(stats, None, learned)
    assert assessment.verdict == verdict
    assert assessment.kind == kind
    assert assessment.needs_repair is needs_repair
    assert assessment.transient is False
    assert assessment.reasons == reasons


@pytest.mark.parametrize(
    ("stats", "verdict", "kind", "reasons"),
    [
        pytest.param(
            run(12, fill_rates={"title": 1.0, "price": 0.8}), "ok", BreakageKind.NONE, [], id="ok"
        ),
        pytest.param(
            run(0),
            "broken",
            BreakageKind.ZERO_RECORDS,
            [
                "records 0 (the scraper expects 5–30 per page) although 1 page answered "
                "HTTP 200: the content is there but the scraper extracts nothing"
            ],
            id="zero-records",
        ),
        pytest.param(
            run(3, fill_rates={"title": 1.0, "price": 0.8}),
            "suspicious",
            BreakageKind.COUNT_ANOMALY,
            ["records 3 (the scraper expects 5–30 per page)"],
            id="too-few",
        ),
        pytest.param(
            run(45, pages=2, fill_rates={"title": 1.0, "price": 0.8}),
            "ok",
            BreakageKind.NONE,
            [],
            id="per-page-maximum-scales-with-pages",
        ),
        pytest.param(
            run(31, fill_rates={"title": 1.0, "price": 0.8}),
            "suspicious",
            BreakageKind.COUNT_ANOMALY,
            ["records 31 (the scraper expects 5–30 per page)"],
            id="too-many",
        ),
        pytest.param(
            run(12, fill_rates={"title": 1.0, "price": 0.4}),
            "suspicious",
            BreakageKind.FILL_RATE_COLLAPSE,
            ["field 'price' filled in 40% of records (the scraper expects at least 50%)"],
            id="below-expected-fill",
        ),
        pytest.param(
            run(12, fill_rates={"title": 0.25, "price": 0.8}),
            "broken",
            BreakageKind.FILL_RATE_COLLAPSE,
            ["field 'title' filled in 25% of records (the scraper expects at least 90%)"],
            id="fill-collapse",
        ),
        pytest.param(
            run(12, fill_rates={"title": 1.0, "price": 0.8}, duplicate_keys=2),
            "suspicious",
            BreakageKind.DUPLICATE_KEYS,
            ["2 duplicate keys among 12 records (none expected)"],
            id="duplicates",
        ),
    ],
)
def test_stats_against_the_scrapers_thresholds(
    thresholds: Baseline,
    stats: ScrapeStats,
    verdict: str,
    kind: BreakageKind,
    reasons: list[str],
) -> None:
    assessment = assess_run(stats, None, thresholds)
    assert (assessment.verdict, assessment.kind, assessment.reasons) == (verdict, kind, reasons)


def test_fields_the_history_does_not_know_are_not_judged(learned: Baseline) -> None:
    # A repaired scraper may add or drop fields; only fields on both sides are compared.
    stats = run(24, fill_rates={"title": 1.0, "isbn": 0.0})
    assert assess_run(stats, None, learned).verdict == "ok"


# --- hard failures ---------------------------------------------------------------------------

TRANSIENT_NOTE = "a transient failure: it counts as a strike, never as a repair attempt"


@pytest.mark.parametrize(
    ("failure", "verdict", "kind", "reason"),
    [
        pytest.param(
            RunFailure(
                error_type="FetchConnectError", error_class="network", message="connection refused"
            ),
            "transient",
            BreakageKind.NETWORK,
            f"FetchConnectError (network): connection refused; {TRANSIENT_NOTE}",
            id="network",
        ),
        pytest.param(
            RunFailure(error_type="FetchDnsError", error_class="dns", message="no such host"),
            "transient",
            BreakageKind.NETWORK,
            f"FetchDnsError (dns): no such host; {TRANSIENT_NOTE}",
            id="dns",
        ),
        pytest.param(
            RunFailure(error_type="FetchTimeoutError", message="no answer within 30s"),
            "transient",
            BreakageKind.TIMEOUT,
            f"FetchTimeoutError: no answer within 30s; {TRANSIENT_NOTE}",
            id="timeout-by-type",
        ),
        pytest.param(
            RunFailure(
                error_type="FetchHttpStatusError",
                error_class="http_5xx",
                status=503,
                message="maintenance",
            ),
            "transient",
            BreakageKind.HTTP_5XX,
            f"HTTP 503 (FetchHttpStatusError): maintenance; {TRANSIENT_NOTE}",
            id="http-5xx",
        ),
        pytest.param(
            RunFailure(
                error_type="FetchHttpStatusError",
                message="https://shop.example/ returned HTTP 502 Bad Gateway: a server-side error",
            ),
            "transient",
            BreakageKind.HTTP_5XX,
            "FetchHttpStatusError: https://shop.example/ returned HTTP 502 Bad Gateway: a "
            f"server-side error; {TRANSIENT_NOTE}",
            id="status-read-from-message",
        ),
        pytest.param(
            RunFailure(error_type="FetchHttpStatusError", status=429, message="slow down"),
            "transient",
            BreakageKind.RATE_LIMITED,
            f"HTTP 429 (FetchHttpStatusError): slow down; {TRANSIENT_NOTE}",
            id="rate-limited",
        ),
        pytest.param(
            RunFailure(
                error_type="FetchHttpStatusError",
                error_class="blocked",
                status=403,
                message="captcha",
            ),
            "broken",
            BreakageKind.BLOCKED,
            "HTTP 403 (FetchHttpStatusError): captcha; the site blocks Mendline with an "
            "anti-bot challenge; a repair cannot fix that — ask the site for access or an API",
            id="blocked",
        ),
        pytest.param(
            RunFailure(
                error_type="FetchHttpStatusError",
                status=403,
                message="returned HTTP 403: the site answered with an anti-bot challenge",
            ),
            "broken",
            BreakageKind.BLOCKED,
            "HTTP 403 (FetchHttpStatusError): returned HTTP 403: the site answered with an "
            "anti-bot challenge; the site blocks Mendline with an anti-bot challenge; a "
            "repair cannot fix that — ask the site for access or an API",
            id="blocked-without-class",
        ),
        pytest.param(
            RunFailure(
                error_type="FetchHttpStatusError",
                error_class="http_4xx",
                status=404,
                message="gone",
            ),
            "broken",
            BreakageKind.HTTP_4XX,
            "HTTP 404 (FetchHttpStatusError): gone; the site refuses the request; check the "
            "source URL and access",
            id="http-4xx",
        ),
        pytest.param(
            RunFailure(
                error_type="RobotsDisallowedError", error_class="robots", message="disallowed"
            ),
            "broken",
            BreakageKind.CONFIG,
            "RobotsDisallowedError (robots): disallowed; the source's configuration prevents "
            "the run; fix its settings, a scraper repair cannot help",
            id="robots",
        ),
        pytest.param(
            RunFailure(error_type="UrlNotAllowedError", error_class="ssrf"),
            "broken",
            BreakageKind.CONFIG,
            "UrlNotAllowedError (ssrf); the source's configuration prevents the run; fix its "
            "settings, a scraper repair cannot help",
            id="ssrf",
        ),
        pytest.param(
            RunFailure(error_type="SpecError", message="invalid selector 'div[['"),
            "broken",
            BreakageKind.PARSE_ERROR,
            "SpecError: invalid selector 'div[['; the scraper no longer reads the page; the "
            "site layout probably changed",
            id="parse-error",
        ),
        pytest.param(
            RunFailure(error_type="NoRecordsFoundError", message="no repeated records"),
            "broken",
            BreakageKind.ZERO_RECORDS,
            "NoRecordsFoundError: no repeated records; the scraper finds no records on the "
            "page; the site layout probably changed",
            id="no-records-found",
        ),
        pytest.param(
            RunFailure(error_type="KeyError", message="'price'"),
            "broken",
            BreakageKind.UNKNOWN,
            "KeyError: 'price'; an unclassified failure: it counts as a strike; look at the "
            "run's error",
            id="unknown",
        ),
    ],
)
def test_hard_failures(failure: RunFailure, verdict: str, kind: BreakageKind, reason: str) -> None:
    assessment = assess_run(None, failure, Baseline())
    assert assessment.verdict == verdict
    assert assessment.kind == kind
    assert assessment.reasons == [reason]
    assert assessment.transient is (verdict == "transient")
    assert assessment.needs_repair is (
        kind in {BreakageKind.PARSE_ERROR, BreakageKind.ZERO_RECORDS}
    )


@pytest.mark.parametrize(
    ("error_class", "kind"),
    [
        ("network", BreakageKind.NETWORK),
        ("dns", BreakageKind.NETWORK),
        ("timeout", BreakageKind.TIMEOUT),
        ("http_4xx", BreakageKind.HTTP_4XX),
        ("http_5xx", BreakageKind.HTTP_5XX),
        ("rate_limited", BreakageKind.RATE_LIMITED),
        ("blocked", BreakageKind.BLOCKED),
        ("not_html", BreakageKind.CONFIG),
        ("too_large", BreakageKind.CONFIG),
        ("robots", BreakageKind.CONFIG),
        ("ssrf", BreakageKind.CONFIG),
        ("render", BreakageKind.NETWORK),
        ("invalid_url", BreakageKind.CONFIG),
    ],
)
def test_every_fetch_error_class_has_a_kind(error_class: str, kind: BreakageKind) -> None:
    failure = RunFailure(error_type="FetchError", error_class=error_class)
    assert assess_run(None, failure, Baseline()).kind == kind


def test_a_failed_run_in_stats_is_read_as_a_failure(learned: Baseline) -> None:
    stats = run(0, status="FAILED", error_type="FetchTimeoutError", error="read timed out")
    assessment = assess_run(stats, None, learned)
    assert (assessment.verdict, assessment.kind) == ("transient", BreakageKind.TIMEOUT)
    assert assessment.reasons == [f"FetchTimeoutError: read timed out; {TRANSIENT_NOTE}"]


def test_long_failure_messages_are_shortened() -> None:
    assessment = assess_run(
        None, RunFailure(error_type="SpecError", message="x" * 5000), Baseline()
    )
    assert "x" * 299 + "…;" in assessment.reasons[0]
    assert len(assessment.reasons[0]) < 400


def test_a_run_needs_stats_or_a_failure() -> None:
    with pytest.raises(ValueError, match="needs the run's stats, its failure, or both"):
        assess_run(None, None, Baseline())


# --- health state machine --------------------------------------------------------------------

GOOD = RunAssessment()
NETWORK_DOWN = assess_run(
    None,
    RunFailure(error_type="FetchConnectError", error_class="network", message="refused"),
    Baseline(),
)


def drifted(reason: str = "records 0 (expected 20–28 from the last 10 good runs)") -> RunAssessment:
    return RunAssessment(
        verdict="broken", kind=BreakageKind.ZERO_RECORDS, needs_repair=True, reasons=[reason]
    )


def test_a_site_redesign_degrades_the_source_and_asks_for_a_repair(learned: Baseline) -> None:
    health = SourceHealth()
    for hour in (0, 1):
        health, transition = health.apply(
            assess_run(run(24), None, learned), at=T0 + timedelta(hours=hour)
        )
        assert transition is None
    redesign = assess_run(run(0), None, learned)
    assert redesign.needs_repair
    health, transition = health.apply(redesign, at=T0 + timedelta(hours=2))
    assert health.state == HealthState.DEGRADED
    assert health.strikes == 1
    assert transition is not None
    assert (transition.from_state, transition.to_state) == (
        HealthState.ACTIVE,
        HealthState.DEGRADED,
    )
    assert transition.at == T0 + timedelta(hours=2)
    assert transition.reason.startswith(
        "broken run (zero_records): records 0 (expected 20–28 from the last 10 good runs)"
    )
    assert health.last_transition_reason == transition.reason
    assert health.can_repair(T0 + timedelta(hours=2)) == (
        True,
        "0 of 3 repair attempts used on 2025-03-03 (UTC)",
    )


def test_strikes_quarantine_a_degraded_source_and_a_good_run_brings_it_back() -> None:
    health = SourceHealth()
    states: list[HealthState] = []
    for hour in range(3):
        health, _ = health.apply(drifted(), at=T0 + timedelta(hours=hour))
        states.append(health.state)
    assert states == [HealthState.DEGRADED, HealthState.DEGRADED, HealthState.QUARANTINED]
    assert health.last_transition_reason.startswith(
        "3 bad runs in a row (limit 3); latest: zero_records: records 0"
    )
    # Further bad probes keep it quarantined without new transitions.
    health, transition = health.apply(drifted(), at=T0 + timedelta(hours=3))
    assert (health.state, transition, health.strikes) == (HealthState.QUARANTINED, None, 4)
    health, transition = health.apply(GOOD, at=T0 + timedelta(hours=4))
    assert health.state == HealthState.ACTIVE
    assert health.strikes == 0
    assert transition is not None
    assert transition.from_state == HealthState.QUARANTINED
    assert transition.reason == "a good run: healthy again after 4 bad runs"


def test_a_good_run_clears_strikes_so_isolated_bad_runs_never_quarantine() -> None:
    health = SourceHealth()
    for day in range(5):
        health, _ = health.apply(drifted(), at=T0 + timedelta(days=day))
        health, _ = health.apply(drifted(), at=T0 + timedelta(days=day, hours=1))
        health, transition = health.apply(GOOD, at=T0 + timedelta(days=day, hours=2))
        assert health.state == HealthState.ACTIVE
        assert transition is not None and transition.from_state == HealthState.DEGRADED


def test_suspicious_runs_count_as_strikes(learned: Baseline) -> None:
    health, transition = SourceHealth().apply(assess_run(run(9), None, learned), at=T0)
    assert health.state == HealthState.DEGRADED
    assert transition is not None
    assert transition.reason == (
        "suspicious run (count_anomaly): records 9 (expected 20–28 from the last 10 good "
        "runs; below the tolerated 16)"
    )
    health, _ = health.apply(max_strikes=2, assessment=assess_run(run(9), None, learned), at=T0)
    assert health.state == HealthState.QUARANTINED


def test_a_day_long_outage_quarantines_without_burning_repairs() -> None:
    health, _ = SourceHealth().apply(GOOD, at=T0)
    states = []
    last: HealthTransition | None = None
    for hour in range(1, 25):
        health, transition = health.apply(NETWORK_DOWN, at=T0 + timedelta(hours=hour))
        states.append(health.state)
        if transition is not None:
            last = transition
    # Three failed hours are a blip: degraded, not quarantined, although they are 3 strikes.
    assert states[:23] == [HealthState.DEGRADED] * 23
    assert health.state == HealthState.QUARANTINED
    assert health.strikes == 24
    assert health.consecutive_failures == 24
    assert last is not None
    assert last.to_state == HealthState.QUARANTINED
    assert last.at == T0 + timedelta(hours=24)
    assert last.reason.startswith(
        "outage: the site has been unreachable for 1d (24 transient failures in a row since "
        "2025-03-03 01:00 UTC, last reached 2025-03-03 00:00 UTC); latest: "
        "FetchConnectError (network): refused"
    )
    assert "No repair is attempted for an outage" in last.reason
    assert health.repairs_today == 0
    assert health.repair_day is None
    assert health.can_repair(T0 + timedelta(hours=24))[0]
    # The site answers again: straight back to ACTIVE.
    health, transition = health.apply(GOOD, at=T0 + timedelta(hours=25))
    assert health.state == HealthState.ACTIVE
    assert transition is not None
    assert transition.reason == "a good run: the site answers again after 24 transient failures"


def test_an_outage_from_the_first_run_is_timed_from_the_first_failure() -> None:
    health = SourceHealth()
    for hour in range(24):
        health, _ = health.apply(NETWORK_DOWN, at=T0 + timedelta(hours=hour))
    assert health.state == HealthState.DEGRADED  # 23 h of failures so far
    health, _ = health.apply(NETWORK_DOWN, at=T0 + timedelta(hours=24))
    assert health.state == HealthState.QUARANTINED
    assert "last reached never" in health.last_transition_reason


def test_strikes_quarantine_only_once_a_run_reaches_the_site_again() -> None:
    health, _ = SourceHealth().apply(drifted(), at=T0)
    health, _ = health.apply(NETWORK_DOWN, at=T0 + timedelta(hours=1))
    health, _ = health.apply(NETWORK_DOWN, at=T0 + timedelta(hours=2))
    assert (health.state, health.strikes) == (HealthState.DEGRADED, 3)
    health, transition = health.apply(drifted(), at=T0 + timedelta(hours=3))
    assert health.state == HealthState.QUARANTINED
    assert transition is not None and transition.reason.startswith("4 bad runs in a row (limit 3)")


def test_a_dead_source_ignores_runs() -> None:
    dead, _ = SourceHealth().mark_dead("site closed", at=T0)
    for assessment in (GOOD, drifted(), NETWORK_DOWN):
        after, transition = dead.apply(assessment, at=T0 + timedelta(hours=1))
        assert (after, transition) == (dead, None)


# --- repairs and the circuit breaker ---------------------------------------------------------


def test_the_breaker_allows_three_repairs_a_day_then_waits_for_the_next_utc_day() -> None:
    health, _ = SourceHealth().apply(drifted(), at=T0 + timedelta(hours=8))
    outcomes: list[tuple[int, RepairOutcome]] = [(9, "failed"), (10, "rolled_back"), (11, "failed")]
    for hour, outcome in outcomes:
        allowed, _ = health.can_repair(T0 + timedelta(hours=hour))
        assert allowed
        health, transition = health.record_repair(T0 + timedelta(hours=hour, minutes=30), outcome)
        assert transition is None
    assert health.repairs_today == 3
    refused = (
        False,
        "repair circuit breaker open: 3 of 3 repair attempts used on 2025-03-03 (UTC); "
        "next attempt allowed from 2025-03-04 00:00 UTC",
    )
    assert health.can_repair(T0 + timedelta(hours=12)) == refused
    assert health.can_repair(T0 + timedelta(hours=23, minutes=59)) == refused
    assert health.can_repair(T0 + timedelta(days=1)) == (
        True,
        "0 of 3 repair attempts used on 2025-03-04 (UTC)",
    )
    assert health.state == HealthState.DEGRADED


def test_the_utc_day_counts_not_the_local_one() -> None:
    paris = T0.astimezone(ZoneInfo("Europe/Paris"))  # 01:00 local
    health, _ = SourceHealth().record_repair(paris - timedelta(hours=2), "failed")  # 23:00 UTC
    assert health.repair_day == (T0 - timedelta(days=1)).date()
    assert health.can_repair(paris, max_per_day=1)[0]


def test_repairs_stopped_by_an_unreachable_site_are_not_counted() -> None:
    health = SourceHealth()
    for minute in range(10):
        health, _ = health.record_repair(T0 + timedelta(minutes=minute), "failed", transient=True)
    assert health.repairs_today == 0
    assert health.can_repair(T0 + timedelta(hours=1))[0]


def test_a_promoted_repair_makes_a_quarantined_source_active() -> None:
    health = SourceHealth()
    for hour in range(3):
        health, _ = health.apply(drifted(), at=T0 + timedelta(hours=hour))
    assert health.state == HealthState.QUARANTINED
    health, transition = health.record_repair(T0 + timedelta(hours=4), "promoted")
    assert health.state == HealthState.ACTIVE
    assert health.strikes == 0
    assert health.repairs_today == 1
    assert transition is not None
    assert transition.reason == "repair promoted (attempt 1 on 2025-03-03)"


def exhaust_day(
    health: SourceHealth, day: int
) -> tuple[SourceHealth, list[HealthTransition | None]]:
    transitions: list[HealthTransition | None] = []
    for attempt in range(3):
        health, transition = health.record_repair(
            T0 + timedelta(days=day, hours=9 + attempt), "failed"
        )
        transitions.append(transition)
    return health, transitions


def test_repairs_exhausted_three_days_in_a_row_make_the_source_dead() -> None:
    health = SourceHealth()
    health, _ = health.apply(drifted(), at=T0)
    health, _ = exhaust_day(health, 0)
    health, _ = exhaust_day(health, 1)
    assert health.state == HealthState.DEGRADED
    assert health.exhausted_days == 2
    health, transitions = exhaust_day(health, 2)
    assert health.state == HealthState.DEAD
    assert transitions[:2] == [None, None]
    dead = transitions[2]
    assert dead is not None
    assert (dead.from_state, dead.to_state) == (HealthState.DEGRADED, HealthState.DEAD)
    assert dead.reason == (
        "repairs exhausted on 3 consecutive UTC days (2025-03-03 to 2025-03-05, 3 attempts a "
        "day, last failed); fix the scraper by hand, then reset the source"
    )
    allowed, why = health.can_repair(T0 + timedelta(days=10))
    assert not allowed
    assert why.startswith("the source is DEAD (repairs exhausted on 3 consecutive UTC days")


def test_a_day_without_exhaustion_or_a_promotion_restarts_the_count() -> None:
    health = SourceHealth()
    health, _ = exhaust_day(health, 0)
    health, _ = exhaust_day(health, 1)
    health, _ = exhaust_day(health, 3)  # day 2 had no exhausted breaker
    assert (health.state, health.exhausted_days) == (HealthState.ACTIVE, 1)
    health, _ = exhaust_day(health, 4)
    health, _ = health.record_repair(T0 + timedelta(days=5, hours=9), "promoted")
    assert health.exhausted_days == 0
    health, _ = exhaust_day(health, 6)
    health, _ = exhaust_day(health, 7)
    assert health.state == HealthState.ACTIVE


# --- by hand ---------------------------------------------------------------------------------


def test_mark_dead_by_hand_then_resume_is_refused_and_reset_revives() -> None:
    health, _ = SourceHealth().apply(drifted(), at=T0)
    health, _ = exhaust_day(health, 0)
    health, transition = health.mark_dead("the shop closed", at=T0 + timedelta(hours=20))
    assert health.state == HealthState.DEAD
    assert transition is not None
    assert (transition.from_state, transition.reason) == (
        HealthState.DEGRADED,
        "marked dead by hand: the shop closed",
    )
    assert health.mark_dead("again", at=T0 + timedelta(hours=21)) == (health, None)

    expected = (
        "cannot resume a DEAD source (marked dead by hand: the shop closed); fix the scraper "
        "and reset it instead"
    )
    assert health.can_resume() == (False, expected)
    with pytest.raises(HealthError) as refused:
        health.resume(T0 + timedelta(hours=22))
    assert str(refused.value) == expected

    health, transition = health.reset(T0 + timedelta(hours=23))
    assert transition is not None
    assert (transition.from_state, transition.to_state) == (HealthState.DEAD, HealthState.ACTIVE)
    assert health.state == HealthState.ACTIVE
    assert (health.strikes, health.repairs_today, health.exhausted_days) == (0, 0, 0)
    assert health.breaker_open_until is None
    assert health.can_repair(T0 + timedelta(hours=23))[0]


def test_resume_lifts_a_quarantine_but_keeps_the_breaker() -> None:
    health = SourceHealth()
    for hour in range(3):
        health, _ = health.apply(drifted(), at=T0 + timedelta(hours=hour))
    health, _ = exhaust_day(health, 0)
    health, transition = health.resume(T0 + timedelta(hours=13))
    assert health.state == HealthState.ACTIVE
    assert health.strikes == 0
    assert transition is not None and transition.reason == "resumed by hand"
    assert not health.can_repair(T0 + timedelta(hours=14))[0]
    assert health.resume(T0 + timedelta(hours=15)) == (health, None)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="must be timezone-aware"):
        SourceHealth().apply(GOOD, at=datetime(2025, 3, 3, 12, 0))


def test_health_survives_continue_as_new_as_compact_json() -> None:
    health = SourceHealth()
    for hour in range(5):
        health, _ = health.apply(NETWORK_DOWN, at=T0 + timedelta(hours=hour))
    health, _ = health.record_repair(T0 + timedelta(hours=6), "failed")
    dumped = health.model_dump_json()
    assert SourceHealth.model_validate_json(dumped) == health
    assert len(dumped) < 1000


def test_a_good_run_ends_the_streak_of_exhausted_days() -> None:
    from models.health import SourceHealth as Health

    day1 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    health = Health()
    for _ in range(3):
        health, _ = health.record_repair(day1, "failed")
    assert health.exhausted_days == 1
    health, _ = health.apply(RunAssessment(), at=day1 + timedelta(hours=6))
    assert health.exhausted_days == 0 and health.last_exhausted_day is None
    day2 = day1 + timedelta(days=1)
    for _ in range(3):
        health, _ = health.record_repair(day2, "failed")
    assert health.exhausted_days == 1 and health.state != "DEAD"
