"""Anomaly detectors on a generated, labelled set: precision, recall and false-alarm rate.

Each series has 100 points of history and 30 scored points. Anomalous series get one event
starting at a random point of the scored part: a **spike** (one point, 5–10 σ), a **level
shift** (3–6 σ to the end) or a **ramp** (a trend reaching 5–8 σ ten points after it
starts). Clean series are **noise** only. Noise is Gaussian, heavy-tailed (Student t, 5
degrees of freedom) or multiplicative log-normal (like latencies), σ being its standard
deviation; every series, clean or not, carries 0–3 outliers of 8–15 σ in its history, the
"few outliers in training windows" the detectors must shrug off.

Scoring, per detector and threshold, over the scored points only:

* **event recall** — events flagged at least once within their first 10 points
  (a spike: at its point);
* **false-alarm rate** — flagged normal points ÷ normal points (the points before an
  event, the points after a spike, and all of a clean series);
* **precision** — flagged anomalous points ÷ flagged points;
* **clean series alarmed** — clean series with any flag (what an operator would see).

Usage::

    .venv/bin/python -m bench.detectors [--series 400] [--seed 7] [--out bench/results/detectors.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from activities.alerting.detectors import scan
from models.alerts import EwmaDetector, ZScoreDetector

HISTORY = 100
SCORED = 30
DETECTION_HORIZON = 10
KINDS = ("noise", "spike", "level_shift", "ramp")
NOISES = ("gaussian", "student_t", "lognormal")
THRESHOLDS = (2.5, 3.0, 3.5, 4.0, 5.0)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "detectors.json"


@dataclass
class LabelledSeries:
    """A generated series: values, which scored points are anomalous, and its event."""

    kind: str
    noise: str
    values: list[float]
    anomalous: list[bool]
    event_start: int | None


def _noise(rng: random.Random, kind: str, sigma: float) -> float:
    if kind == "gaussian":
        return rng.gauss(0.0, sigma)
    if kind == "student_t":
        # t with 5 degrees of freedom, rescaled to standard deviation sigma.
        chi2 = sum(rng.gauss(0, 1) ** 2 for _ in range(5))
        return rng.gauss(0, 1) / math.sqrt(chi2 / 5) * sigma / math.sqrt(5 / 3)
    # Log-normal multiplicative noise, centred: level * (exp(N(0, s)) - E[exp]).
    s = 0.25
    raw = math.exp(rng.gauss(0, s)) - math.exp(s * s / 2)
    return raw * sigma / math.sqrt((math.exp(s * s) - 1) * math.exp(s * s))


def generate(rng: random.Random, kind: str, noise: str) -> LabelledSeries:
    """One labelled series of ``kind`` (``noise`` for a clean one)."""
    level = rng.uniform(5, 500)
    sigma = level * rng.uniform(0.02, 0.2)
    total = HISTORY + SCORED
    values = [level + _noise(rng, noise, sigma) for _ in range(total)]
    for _ in range(rng.randint(0, 3)):
        at = rng.randrange(0, HISTORY)
        values[at] += rng.choice((-1, 1)) * rng.uniform(8, 15) * sigma
    anomalous = [False] * total
    start: int | None = None
    if kind != "noise":
        start = HISTORY + rng.randrange(0, SCORED - DETECTION_HORIZON)
        sign = rng.choice((-1, 1))
        if kind == "spike":
            values[start] += sign * rng.uniform(5, 10) * sigma
            anomalous[start] = True
        elif kind == "level_shift":
            size = rng.uniform(3, 6) * sigma
            for i in range(start, total):
                values[i] += sign * size
                anomalous[i] = True
        else:
            slope = rng.uniform(5, 8) * sigma / DETECTION_HORIZON
            for i in range(start, total):
                values[i] += sign * slope * (i - start + 1)
                anomalous[i] = True
    return LabelledSeries(kind, noise, values, anomalous[HISTORY:], start)


def generate_set(count: int, seed: int) -> list[LabelledSeries]:
    """``count`` series, a quarter of each kind, noises in turn."""
    rng = random.Random(seed)
    return [
        generate(rng, KINDS[i % len(KINDS)], NOISES[(i // len(KINDS)) % len(NOISES)])
        for i in range(count)
    ]


@dataclass
class Score:
    """Scores of one detector configuration on the whole set."""

    detector: str
    threshold: float
    events: int = 0
    events_found: int = 0
    normal_points: int = 0
    false_alarms: int = 0
    flags: int = 0
    true_flags: int = 0
    clean_series: int = 0
    clean_alarmed: int = 0
    recall_by_kind: dict[str, float] = field(default_factory=dict)
    false_alarm_rate_by_noise: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def recall(self) -> float:
        """Events found ÷ events."""
        return self.events_found / self.events if self.events else 0.0

    @property
    def false_alarm_rate(self) -> float:
        """Flagged normal points ÷ normal points."""
        return self.false_alarms / self.normal_points if self.normal_points else 0.0

    @property
    def precision(self) -> float:
        """Flagged anomalous points ÷ flagged points."""
        return self.true_flags / self.flags if self.flags else 0.0


def evaluate(series: list[LabelledSeries], name: str, spec: ZScoreDetector | EwmaDetector) -> Score:
    """Score one detector configuration on ``series``."""
    score = Score(detector=name, threshold=spec.threshold)
    found_by_kind: dict[str, list[bool]] = {}
    normal_by_noise: dict[str, list[bool]] = {}
    started = time.perf_counter()
    for item in series:
        flags = [bool(d and d.anomalous) for d in scan(item.values, spec)[HISTORY:]]
        for flagged, bad in zip(flags, item.anomalous, strict=True):
            score.flags += flagged
            score.true_flags += flagged and bad
            if not bad:
                score.normal_points += 1
                score.false_alarms += flagged
                normal_by_noise.setdefault(item.noise, []).append(flagged)
        if item.event_start is None:
            score.clean_series += 1
            score.clean_alarmed += any(flags)
            continue
        first = item.event_start - HISTORY
        window = 1 if item.kind == "spike" else DETECTION_HORIZON
        found = any(flags[first : first + window])
        score.events += 1
        score.events_found += found
        found_by_kind.setdefault(item.kind, []).append(found)
    score.seconds = time.perf_counter() - started
    score.recall_by_kind = {k: sum(v) / len(v) for k, v in sorted(found_by_kind.items())}
    score.false_alarm_rate_by_noise = {
        k: sum(v) / len(v) for k, v in sorted(normal_by_noise.items())
    }
    return score


def detectors(threshold: float) -> dict[str, ZScoreDetector | EwmaDetector]:
    """The configurations scored: the defaults of a rule, at ``threshold``."""
    return {
        "zscore": ZScoreDetector(kind="zscore", threshold=threshold),
        "ewma": EwmaDetector(kind="ewma", threshold=threshold),
    }


def markdown(scores: list[Score], count: int, seed: int) -> str:
    """The results as the tables of docs/benchmarks.md."""
    lines = [
        f"{count} series (seed {seed}), {SCORED} scored points each; detectors at rule defaults "
        "(z-score window 50, EWMA alpha 0.1 window 100).",
        "",
        "| detector | threshold | precision | event recall | spike | level shift | ramp "
        "| false-alarm rate | Gaussian | Student t | log-normal | clean series alarmed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        by = s.recall_by_kind
        fa = s.false_alarm_rate_by_noise
        lines.append(
            f"| {s.detector} | {s.threshold:g} | {s.precision:.3f} | {s.recall:.3f} "
            f"| {by.get('spike', 0):.2f} | {by.get('level_shift', 0):.2f} | {by.get('ramp', 0):.2f} "
            f"| {s.false_alarm_rate:.2%} | {fa.get('gaussian', 0):.2%} | {fa.get('student_t', 0):.2%} "
            f"| {fa.get('lognormal', 0):.2%} | {s.clean_alarmed}/{s.clean_series} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=400, help="series to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    series = generate_set(args.series, args.seed)
    scores = [
        evaluate(series, name, spec)
        for threshold in THRESHOLDS
        for name, spec in detectors(threshold).items()
    ]
    scores.sort(key=lambda s: (s.detector != "zscore", s.threshold))
    print(markdown(scores, args.series, args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "series": args.series,
        "seed": args.seed,
        "scores": [
            {
                **asdict(s),
                "precision": s.precision,
                "recall": s.recall,
                "false_alarm_rate": s.false_alarm_rate,
            }
            for s in scores
        ],
    }
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
