"""The failure predictor's quality: held-out AUC of the built-in model and of a model
trained by ``mendline model train`` on telemetry in a real database.

Labels: a run that failed for good is *persisted* when the task's next run failed too
(see ``activities/predictor/train.py``). The data is the seeded generator of
``activities/predictor/generator.py``; the built-in model is trained on seed 7.

Reported:

* **split AUC** — the AUC recorded with the model: a stratified quarter of its own
  training histories, held out from the fit;
* **held-out AUC** — on histories of other seeds (different tasks, different incidents),
  which no fit has seen: the figure to quote;
* **telemetry AUC** — the same for a model trained through the database path
  (histories written to ``task_attempts``, read back by ``samples_from_database``);
* **baselines** — the AUC of single signals on the held-out data, to show what the model
  adds: the recent failure rate alone, and a per-error-class prior.

Usage::

    .venv/bin/python -m bench.predictor [--seeds 11 12 13] [--out bench/results/predictor.json]
    .venv/bin/python -m bench.predictor --write-builtin    # regenerate the committed model
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from activities.predictor.generator import generate, write_telemetry
from activities.predictor.model import ModelArtifact, artifact_sha256, canonical_artifact
from activities.predictor.registry import BUILTIN_PATH, BUILTIN_SHA256, load_builtin
from activities.predictor.train import (
    Sample,
    samples_from_generated,
    train_builtin,
    train_from_database,
)
from activities.storage import Database

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "predictor.json"
DEFAULT_SEEDS = (11, 12, 13)


def auc(labels: list[bool], scores: list[float]) -> float:
    """Area under the ROC curve (ties count half), without numpy."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not positives or not negatives:
        return float("nan")
    ranked = sorted((s, i) for i, s in enumerate(scores))
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(ranked):
        end = start
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[start][0]:
            end += 1
        for k in range(start, end + 1):
            ranks[ranked[k][1]] = (start + end) / 2 + 1
        start = end + 1
    positive_ranks = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    n_pos, n_neg = len(positives), len(negatives)
    return (positive_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def score(model: ModelArtifact, samples: list[Sample]) -> float:
    return auc([s.persisted for s in samples], [model.risk(s.features) for s in samples])


def class_prior(train: list[Sample]) -> dict[str, float]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in train:
        counts[s.features.error_class][0] += 1
        counts[s.features.error_class][1] += s.persisted
    return {k: (p + 1) / (n + 2) for k, (n, p) in counts.items()}


def run(seeds: tuple[int, ...]) -> dict[str, Any]:
    started = time.perf_counter()
    builtin = load_builtin()
    train_samples = samples_from_generated(generate(7))
    prior = class_prior(train_samples)
    held_out: dict[str, dict[str, float]] = {}
    pooled: list[Sample] = []
    for seed in seeds:
        samples = samples_from_generated(generate(seed))
        pooled += samples
        labels = [s.persisted for s in samples]
        held_out[str(seed)] = {
            "samples": len(samples),
            "positive_rate": round(sum(labels) / len(labels), 4),
            "auc_builtin": round(score(builtin.artifact, samples), 4),
            "auc_recent_failure_rate": round(
                auc(labels, [s.features.recent_failure_rate for s in samples]), 4
            ),
            "auc_error_class_prior": round(
                auc(labels, [prior.get(s.features.error_class, 0.5) for s in samples]), 4
            ),
        }
    # The database path: telemetry of one seed in a real SQLite file, trained on as
    # `mendline model train` does, scored on the other seeds.
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite:///{tmp}/telemetry.db")
        try:
            written = write_telemetry(database, generate(seeds[0]))
            trained = train_from_database(database, "bench")
        finally:
            database.dispose()
    others = [s for seed in seeds[1:] for s in samples_from_generated(generate(seed))]
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "builtin": {
            "sha256": builtin.sha256,
            "trained_on": builtin.artifact.trained_on,
            "split_auc": builtin.artifact.metrics.get("auc"),
            "metrics": builtin.artifact.metrics,
        },
        "held_out": held_out,
        "held_out_auc_pooled": round(score(builtin.artifact, pooled), 4),
        "held_out_auc_mean": round(statistics.mean(v["auc_builtin"] for v in held_out.values()), 4),
        "telemetry": {
            "attempts_written": written,
            "seed": seeds[0],
            "split_auc": trained.metrics.get("auc"),
            "metrics": trained.metrics,
            "held_out_auc": round(score(trained, others), 4) if others else None,
            "held_out_seeds": list(seeds[1:]),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def write_builtin() -> str:
    """Retrain the built-in model and write its artifact; returns its SHA-256."""
    text = canonical_artifact(train_builtin())
    BUILTIN_PATH.write_text(text + "\n", encoding="utf-8")
    return artifact_sha256(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--write-builtin",
        action="store_true",
        help="retrain the built-in model, write models/builtin/failure_predictor.json",
    )
    args = parser.parse_args()
    if args.write_builtin:
        sha256 = write_builtin()
        note = "" if sha256 == BUILTIN_SHA256 else " (pin it as BUILTIN_SHA256 in registry.py)"
        print(f"wrote {BUILTIN_PATH}: sha256 {sha256}{note}")
        return
    result = run(tuple(args.seeds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
