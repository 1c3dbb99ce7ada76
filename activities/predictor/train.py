"""Training failure models: labelled samples from a history, then a scikit-learn fit.

A *sample* is a run that failed for good (its last attempt failed), with the features it
had at that moment (:func:`~activities.predictor.features.compute_features` over the
history before it) and a label: did the failure persist — did the task's **next** run fail
too? Runs with no next run yet are not labelled. Sources are labelled the same way from
their runs.

The fit is scikit-learn's ``StandardScaler`` + ``LogisticRegression`` on a stratified
split; the held-out part gives the AUC recorded with the model, and only the training part
is fitted, so the AUC is an honest estimate of the model that ships. The fitted numbers are
then copied into a :class:`~activities.predictor.model.ModelArtifact` (JSON, never a
pickle).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from activities.predictor.errors import NotEnoughDataError
from activities.predictor.features import (
    HISTORY_LIMIT,
    Attempt,
    compute_features,
    health_timeline,
    source_attempt,
    task_attempt,
)
from activities.predictor.generator import GeneratedTask, generate
from activities.predictor.model import ModelArtifact, default_columns, feature_row
from activities.predictor.registry import BUILTIN_NAME
from activities.storage import Database, utcnow
from models.db import TaskAttemptRow
from models.db_sources import SourceRow, SourceRunRow
from models.remediation import Features

BUILTIN_SEED = 7
MIN_SAMPLES = 40
"""Fewest labelled failures ``mendline model train`` fits on."""
MIN_PER_CLASS = 5
"""Fewest failures that persisted, and that did not, it needs (an AUC needs both)."""
TEST_FRACTION = 0.25


@dataclass(frozen=True)
class Sample:
    """A failure as the model sees it, and whether it persisted."""

    features: Features
    persisted: bool


def samples_from_history(
    history: Sequence[Attempt], source_level: Callable[[datetime], float] | None = None
) -> list[Sample]:
    """Labelled samples of one task's (or source's) history, oldest first."""
    ordered = sorted(history, key=lambda a: (a.started_at, a.attempt))
    runs: dict[str, list[int]] = {}
    for index, attempt in enumerate(ordered):
        runs.setdefault(attempt.run_id, []).append(index)
    finals: list[tuple[str, Attempt, int, int]] = []
    for run_id, indexes in runs.items():
        last = max((ordered[i] for i in indexes), key=lambda a: (a.attempt, a.started_at))
        if last.status in ("SUCCEEDED", "FAILED"):
            finals.append((run_id, last, len(indexes), indexes[-1]))
    finals.sort(key=lambda item: ordered[runs[item[0]][0]].started_at)
    samples = []
    for position, (run_id, last, count, end) in enumerate(finals[:-1]):
        if last.status != "FAILED":
            continue
        window = ordered[max(0, end + 1 - HISTORY_LIMIT) : end + 1]
        at = last.at
        level = source_level(at - timedelta(microseconds=1)) if source_level else 0.0
        features = compute_features(
            window,
            run_id,
            at=at,
            error_type=last.error_type,
            message=last.error_message or "",
            attempts=count,
            source_health=level,
        )
        samples.append(Sample(features, finals[position + 1][1].status == "FAILED"))
    return samples


def samples_from_generated(tasks: Sequence[GeneratedTask]) -> list[Sample]:
    """Labelled samples of generated histories."""
    samples: list[Sample] = []
    for task in tasks:
        samples += samples_from_history(task.attempts, task.source_level())
    return samples


def samples_from_database(database: Database) -> list[Sample]:
    """Labelled samples of every task and source history in Mendline's database."""
    samples: list[Sample] = []
    with database.session() as session:
        keys = session.execute(
            select(TaskAttemptRow.pipeline, TaskAttemptRow.task, TaskAttemptRow.task_type)
            .where(TaskAttemptRow.status == "FAILED")
            .distinct()
        ).all()
        sources = session.scalars(
            select(SourceRunRow.source).where(SourceRunRow.status == "FAILED").distinct()
        ).all()
    with database.session() as session:
        source_names = set(session.scalars(select(SourceRow.name)).all())
    for pipeline, task, task_type in sorted(set(keys)):
        with database.session() as session:
            rows = session.scalars(
                select(TaskAttemptRow).where(
                    TaskAttemptRow.pipeline == pipeline, TaskAttemptRow.task == task
                )
            ).all()
            history = [task_attempt(row) for row in rows]
        # Telemetry does not keep a task's params, so a scrape task's source is known only
        # when the task is named after it (the usual convention, and the generator's).
        level = (
            health_timeline(database, task)
            if task_type == "scrape" and task in source_names
            else None
        )
        samples += samples_from_history(history, level)
    for source in sorted(sources):
        with database.session() as session:
            rows_ = session.scalars(select(SourceRunRow).where(SourceRunRow.source == source)).all()
            history = [source_attempt(row) for row in rows_]
        samples += samples_from_history(history, health_timeline(database, source))
    return samples


def fit(
    samples: Sequence[Sample],
    *,
    name: str,
    trained_on: dict[str, Any],
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
) -> ModelArtifact:
    """Fit a model on a stratified split of ``samples`` and score it on the rest.

    Raises:
        NotEnoughDataError: Fewer than :data:`MIN_SAMPLES` samples, or fewer than
            :data:`MIN_PER_CLASS` of either label.
    """
    # scikit-learn and numpy are imported here: only training needs them, predictions
    # are a dot product (and the CLI's other commands start faster without them).
    import numpy as np
    from sklearn.linear_model import (  # type: ignore[import-untyped,unused-ignore]
        LogisticRegression,
    )
    from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped,unused-ignore]
    from sklearn.model_selection import (  # type: ignore[import-untyped,unused-ignore]
        train_test_split,
    )
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped,unused-ignore]

    positives = sum(s.persisted for s in samples)
    negatives = len(samples) - positives
    if len(samples) < MIN_SAMPLES or min(positives, negatives) < MIN_PER_CLASS:
        raise NotEnoughDataError(len(samples), positives, negatives, MIN_SAMPLES, MIN_PER_CLASS)
    numeric, categorical = default_columns()
    x = np.array([feature_row(numeric, categorical, s.features) for s in samples], dtype=float)
    y = np.array([int(s.persisted) for s in samples])
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    scaler = StandardScaler().fit(x_train)
    # A column that never varies (a category absent from training) gets scale 1, as
    # StandardScaler does, so scoring divides by something sane.
    classifier = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x_train), y_train)
    scores = classifier.predict_proba(scaler.transform(x_test))[:, 1]
    metrics = {
        "auc": round(float(roc_auc_score(y_test, scores)), 4),
        "n_train": float(len(y_train)),
        "n_test": float(len(y_test)),
        "positive_rate": round(float(y.mean()), 4),
    }
    return ModelArtifact(
        name=name,
        numeric=numeric,
        categorical=categorical,
        mean=[float(v) for v in scaler.mean_],
        scale=[float(v) for v in scaler.scale_],
        coefficients=[float(v) for v in classifier.coef_[0]],
        intercept=float(classifier.intercept_[0]),
        metrics=metrics,
        trained_on=trained_on,
    )


def train_builtin(seed: int = BUILTIN_SEED) -> ModelArtifact:
    """The built-in model: fitted on :func:`~activities.predictor.generator.generate`."""
    samples = samples_from_generated(generate(seed))
    return fit(
        samples,
        name=BUILTIN_NAME,
        trained_on={"source": "generated", "seed": seed, "samples": len(samples)},
    )


def train_from_database(database: Database, name: str, seed: int = 0) -> ModelArtifact:
    """A model fitted on the telemetry in ``database``.

    Raises:
        NotEnoughDataError: Too few labelled failures (see :func:`fit`).
    """
    samples = samples_from_database(database)
    return fit(
        samples,
        name=name,
        seed=seed,
        trained_on={
            "source": "telemetry",
            "database": database.engine.dialect.name,
            "samples": len(samples),
            "at": utcnow().isoformat(timespec="seconds"),
        },
    )
