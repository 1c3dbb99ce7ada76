"""Anomaly detectors over a metric series: robust z-score and EWMA.

Both are seasonality-naive (a daily cycle is noise to them) and judge each point against
the points *before* it only, so the verdict on the latest point never depends on the future
and a series can be scanned once for every point. Both are robust to a few outliers among
the history they learn from:

* **Robust z-score** — the median and the MAD (median absolute deviation, scaled by 1.4826
  to estimate a standard deviation for normal noise) of the previous ``window`` points. A
  handful of spikes barely move either, unlike a mean and standard deviation.
* **EWMA** — an exponentially weighted mean and variance, started from the median and MAD
  of the first ``min_points`` points and updated with each point's deviation clipped to
  ``threshold`` standard deviations (a Huber-style update), so one huge spike moves it no
  more than a borderline one.

A spread of zero (a flat series) would make every change infinitely anomalous, so the
spread used is at least ``RELATIVE_SCALE_FLOOR`` of the level (and ``ABSOLUTE_SCALE_FLOOR``);
``min_deviation`` additionally ignores changes too small to matter in the metric's unit.

Pure Python and deterministic: numpy is not a dependency and the series are short (a few
hundred points), so a scan costs microseconds per point.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

from models.alerts import Direction, EwmaDetector, ZScoreDetector

MAD_TO_SIGMA = 1.4826
"""MAD × this estimates the standard deviation of normally distributed noise."""
RELATIVE_SCALE_FLOOR = 0.01
"""The spread is taken to be at least 1 % of the level's magnitude."""
ABSOLUTE_SCALE_FLOOR = 1e-6
"""… and at least this, so a series of zeros has a defined score."""
EWMA_CLIP = 2.0
"""Points enter the EWMA clipped to this many spreads from the median (Huber's constant)."""


class Detection(NamedTuple):
    """The verdict on one point.

    Attributes:
        value: The point's value.
        expected: What the history predicts (median or EWMA mean).
        scale: The spread the score is measured in.
        score: ``(value - expected) / scale``, signed.
        anomalous: Whether the point is an anomaly under the detector's settings.
        average: Set when the EWMA, not the point, decided: the EWMA's value (then
            ``score`` and ``scale`` are those of the average).
    """

    value: float
    expected: float
    scale: float
    score: float
    anomalous: bool
    average: float | None = None


def _floor(scale: float, level: float) -> float:
    return max(scale, RELATIVE_SCALE_FLOOR * abs(level), ABSOLUTE_SCALE_FLOOR)


def _judge(
    value: float,
    expected: float,
    scale: float,
    threshold: float,
    direction: Direction,
    min_deviation: float,
) -> Detection:
    score = (value - expected) / scale
    if direction == Direction.UP:
        beyond = score > threshold
    elif direction == Direction.DOWN:
        beyond = score < -threshold
    else:
        beyond = abs(score) > threshold
    anomalous = beyond and abs(value - expected) >= min_deviation
    return Detection(value, expected, scale, score, anomalous)


def robust_location_scale(values: Sequence[float]) -> tuple[float, float]:
    """The median and the MAD-based standard deviation estimate of ``values``."""
    median = statistics.median(values)
    mad = statistics.median([abs(v - median) for v in values])
    return median, _floor(MAD_TO_SIGMA * mad, median)


def judge_zscore(history: Sequence[float], value: float, spec: ZScoreDetector) -> Detection | None:
    """Judge ``value`` by its robust z-score against the last ``window`` points of ``history``.

    Returns:
        The verdict, or None while fewer than ``spec.min_points`` points of history exist.
    """
    history = history[-spec.window :]
    if len(history) < spec.min_points:
        return None
    median, scale = robust_location_scale(history)
    return _judge(value, median, scale, spec.threshold, spec.direction, spec.min_deviation)


def judge_ewma(history: Sequence[float], value: float, spec: EwmaDetector) -> Detection | None:
    """Judge ``value`` by a combined Shewhart–EWMA chart on a robust baseline.

    The baseline is the median and MAD-based spread of the last ``window`` points of
    ``history``. The point is anomalous when it is itself more than ``threshold`` spreads
    from the median (catches spikes), or when the EWMA of those points and the point — each
    clipped to ``EWMA_CLIP`` spreads from the median, so an old outlier weighs no more than
    a borderline point — is more than ``threshold`` of its own standard deviation
    ``spread * sqrt(alpha / (2 - alpha))`` from the median (catches small shifts and ramps
    sooner than the point alone would).

    Returns:
        The verdict, or None while fewer than ``spec.min_points`` points of history exist.
    """
    history = history[-spec.window :]
    if len(history) < spec.min_points:
        return None
    median, scale = robust_location_scale(history)
    low, high = median - EWMA_CLIP * scale, median + EWMA_CLIP * scale
    average = median
    for point in (*history, value):
        average += spec.alpha * (min(high, max(low, point)) - average)
    single = _judge(value, median, scale, spec.threshold, spec.direction, spec.min_deviation)
    if single.anomalous:
        return single
    smoothing = math.sqrt(spec.alpha / (2 - spec.alpha))
    smoothed = _judge(
        average, median, scale * smoothing, spec.threshold, spec.direction, spec.min_deviation
    )
    return smoothed._replace(value=value, average=average) if smoothed.anomalous else single


def judge(
    history: Sequence[float], value: float, spec: ZScoreDetector | EwmaDetector
) -> Detection | None:
    """Judge ``value`` against the points before it with the detector ``spec`` describes."""
    if isinstance(spec, ZScoreDetector):
        return judge_zscore(history, value, spec)
    return judge_ewma(history, value, spec)


def scan(values: Sequence[float], spec: ZScoreDetector | EwmaDetector) -> list[Detection | None]:
    """Judge every point of ``values`` against the points before it.

    Returns:
        One verdict per point; None while fewer than ``spec.min_points`` points precede it.
    """
    return [
        judge(values[max(0, index - spec.window) : index], value, spec)
        for index, value in enumerate(values)
    ]
