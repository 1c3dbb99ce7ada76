"""Anomaly detectors on generated series: they find known anomalies and stay quiet on noise."""

from __future__ import annotations

import random

import pytest

from activities.alerting.detectors import judge, robust_location_scale, scan
from models.alerts import Direction, EwmaDetector, ZScoreDetector

ZSCORE = ZScoreDetector(kind="zscore")
EWMA = EwmaDetector(kind="ewma")
DETECTORS = [pytest.param(ZSCORE, id="zscore"), pytest.param(EWMA, id="ewma")]


def noise(seed: int, n: int = 120, level: float = 100.0, sigma: float = 5.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(level, sigma) for _ in range(n)]


def flagged(values: list[float], spec: ZScoreDetector | EwmaDetector) -> list[int]:
    return [i for i, d in enumerate(scan(values, spec)) if d is not None and d.anomalous]


def with_training_outliers(values: list[float], seed: int) -> list[float]:
    """Three 12-sigma outliers among the first 80 points: the history the detector learns from."""
    rng = random.Random(seed)
    out = list(values)
    for at in rng.sample(range(10, 80), 3):
        out[at] += rng.choice((-1, 1)) * 60.0
    return out


@pytest.mark.parametrize("spec", DETECTORS)
def test_clean_gaussian_noise_raises_almost_nothing(spec: ZScoreDetector | EwmaDetector) -> None:
    flags = sum(len(flagged(noise(seed), spec)) for seed in range(20))
    judged = sum(1 for seed in range(20) for d in scan(noise(seed), spec) if d is not None)
    # Threshold 3.5 on normal noise: expect well under 1 % of points.
    assert flags / judged < 0.01, f"{flags} false alarms in {judged} points"


@pytest.mark.parametrize("spec", DETECTORS)
def test_a_spike_is_found_at_its_point(spec: ZScoreDetector | EwmaDetector) -> None:
    for seed in range(10):
        values = with_training_outliers(noise(seed), seed)
        values[100] += 40.0  # 8 sigma
        assert 100 in flagged(values, spec), f"seed {seed}"


@pytest.mark.parametrize("spec", DETECTORS)
def test_a_level_shift_is_found_within_a_few_points(spec: ZScoreDetector | EwmaDetector) -> None:
    for seed in range(10):
        values = with_training_outliers(noise(seed), seed)
        values[100:] = [v - 25.0 for v in values[100:]]  # 5 sigma down, for good
        assert any(100 <= i < 105 for i in flagged(values, spec)), f"seed {seed}"


@pytest.mark.parametrize("spec", DETECTORS)
def test_a_ramp_is_found_before_it_gets_far(spec: ZScoreDetector | EwmaDetector) -> None:
    for seed in range(10):
        values = with_training_outliers(noise(seed), seed)
        for i in range(100, 120):
            values[i] += 3.0 * (i - 99)  # +0.6 sigma per point
        hits = [i for i in flagged(values, spec) if i >= 100]
        assert hits and hits[0] < 110, f"seed {seed}: first flag {hits[:1]}"


def test_ewma_sees_a_small_lasting_shift_the_point_rule_misses() -> None:
    """A 2.5-sigma shift rarely crosses 3.5 sigma on one point; the EWMA accumulates it."""
    missed_by_zscore = found_by_ewma = 0
    for seed in range(10):
        values = noise(seed)
        values[100:] = [v + 12.5 for v in values[100:]]
        missed_by_zscore += not any(100 <= i < 110 for i in flagged(values, ZSCORE))
        found_by_ewma += any(100 <= i < 110 for i in flagged(values, EWMA))
    assert found_by_ewma >= 9
    assert missed_by_zscore >= 3


@pytest.mark.parametrize("spec", DETECTORS)
def test_training_outliers_do_not_raise_alarms_afterwards(
    spec: ZScoreDetector | EwmaDetector,
) -> None:
    for seed in range(10):
        clean = noise(seed)
        spiked = list(clean)
        spiked[90] += 100.0  # a 20-sigma outlier in the history of the points after it
        after = [i for i in flagged(spiked, spec) if i > 90]
        assert after == [i for i in flagged(clean, spec) if i > 90], f"seed {seed}"


def test_the_median_and_mad_ignore_a_few_outliers() -> None:
    values = [10.0, 11.0, 9.0, 10.5, 9.5, 10.0, 1000.0, -500.0]
    median, scale = robust_location_scale(values)
    assert median == pytest.approx(10.0, abs=0.3)
    assert scale < 2.0  # a mean/standard deviation would say ~400


def test_direction_up_ignores_drops() -> None:
    values = noise(1)
    values[100] -= 50.0
    values[110] += 50.0
    up = ZScoreDetector(kind="zscore", direction=Direction.UP)
    assert flagged(values, up) == [110]


def test_min_deviation_ignores_changes_too_small_to_matter() -> None:
    # Latencies of a few milliseconds: a jump of 20 ms is many spreads but not worth an alert.
    values = [0.010 + 0.0005 * (i % 3) for i in range(60)] + [0.030]
    assert judge(values[:-1], values[-1], ZSCORE) is not None
    assert judge(values[:-1], values[-1], ZSCORE).anomalous  # type: ignore[union-attr]
    relaxed = ZScoreDetector(kind="zscore", min_deviation=0.5)
    assert not judge(values[:-1], values[-1], relaxed).anomalous  # type: ignore[union-attr]


def test_a_flat_series_still_has_a_scale() -> None:
    """A constant history has MAD 0: a tiny wobble must not be 'infinitely' anomalous."""
    flat = [100.0] * 30
    assert not judge(flat, 100.5, ZSCORE).anomalous  # type: ignore[union-attr]
    assert judge(flat, 150.0, ZSCORE).anomalous  # type: ignore[union-attr]
    zeros = [0.0] * 30
    assert judge(zeros, 1.0, EWMA).anomalous  # type: ignore[union-attr]


@pytest.mark.parametrize("spec", DETECTORS)
def test_no_verdict_without_enough_history(spec: ZScoreDetector | EwmaDetector) -> None:
    assert judge([1.0] * (spec.min_points - 1), 1000.0, spec) is None
    assert judge([1.0] * spec.min_points, 1000.0, spec) is not None


@pytest.mark.parametrize("spec", DETECTORS)
def test_a_verdict_depends_only_on_the_window_before_the_point(
    spec: ZScoreDetector | EwmaDetector,
) -> None:
    values = noise(3, n=300)
    values[250] += 40.0
    whole = scan(values, spec)[250]
    tail = scan(values[250 - spec.window : 251], spec)[-1]
    assert whole == tail
