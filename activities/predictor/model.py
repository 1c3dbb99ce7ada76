"""The failure model as data: a standardised logistic regression serialised as JSON.

An artifact is plain JSON — feature order, transforms, one-hot categories, scaler means and
scales, coefficients, intercept, metrics — so loading one (even from an untrusted place)
only parses numbers; nothing is ever unpickled or executed. Its identity is the SHA-256 of
its canonical JSON (:func:`canonical_artifact`), which the registry stores and checks on
every load.

Scoring is a dot product done here, not by scikit-learn, so a prediction needs neither
scikit-learn nor numpy (:mod:`activities.predictor.train` uses them to fit).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities.audit_chain import canonical_json
from activities.predictor.features import ERROR_CLASSES
from models.remediation import Features, Prediction

ARTIFACT_FORMAT: Final = "mendline-failure-model/1"

Transform = Literal["identity", "log1p"]

NUMERIC_FEATURES: dict[str, Transform] = {
    "recent_failure_rate": "identity",
    "duration_zscore": "identity",
    "attempts": "log1p",
    "hours_since_success": "log1p",
    "volume_change": "identity",
    "source_health": "identity",
    "runs_seen": "log1p",
}
"""The numeric features a model uses, in order, and how each is transformed first."""

CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {"error_class": ERROR_CLASSES}
"""One-hot features and their categories (an unseen value sets none of them)."""

LABELS = {
    "recent_failure_rate": "recent failure rate",
    "duration_zscore": "duration z-score",
    "attempts": "attempts",
    "hours_since_success": "hours since success",
    "volume_change": "volume change",
    "source_health": "source health",
    "runs_seen": "runs seen",
    "error_class": "error class",
}
TOP_FACTORS = 3


class NumericColumn(BaseModel):
    """A numeric input column: the feature and its transform."""

    model_config = ConfigDict(extra="forbid")

    name: str
    transform: Transform


class CategoricalColumns(BaseModel):
    """One-hot input columns: the feature and its categories, one column each."""

    model_config = ConfigDict(extra="forbid")

    name: str
    categories: list[str]


def default_columns() -> tuple[list[NumericColumn], list[CategoricalColumns]]:
    """The input columns of models Mendline trains now."""
    return (
        [NumericColumn(name=n, transform=t) for n, t in NUMERIC_FEATURES.items()],
        [CategoricalColumns(name=n, categories=list(c)) for n, c in CATEGORICAL_FEATURES.items()],
    )


def feature_row(
    numeric: Sequence[NumericColumn], categorical: Sequence[CategoricalColumns], features: Features
) -> list[float]:
    """The input row of ``features`` for these columns (transformed, one-hot, unscaled)."""
    row: list[float] = []
    for column in numeric:
        value = float(getattr(features, column.name))
        row.append(math.log1p(max(value, 0.0)) if column.transform == "log1p" else value)
    for group in categorical:
        category = str(getattr(features, group.name))
        row += [1.0 if category == c else 0.0 for c in group.categories]
    return row


class ModelArtifact(BaseModel):
    """A trained failure model, everything needed to score with it.

    Attributes:
        format: Always :data:`ARTIFACT_FORMAT`.
        name: The model's registry name.
        numeric: Numeric columns, in order (lists, not mappings: canonical JSON sorts keys).
        categorical: One-hot columns, in order after them.
        mean: Scaler means, one per column.
        scale: Scaler scales (standard deviations), one per column.
        coefficients: Logistic regression weights, one per standardised column.
        intercept: Its intercept.
        metrics: Held-out ``auc``, ``n_train``, ``n_test``, ``positive_rate``.
        trained_on: Where the training data came from (``generated`` with its seed, or
            ``telemetry`` with the database's dialect) and when.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["mendline-failure-model/1"] = ARTIFACT_FORMAT
    name: str = Field(min_length=1, max_length=100)
    numeric: list[NumericColumn]
    categorical: list[CategoricalColumns]
    mean: list[float]
    scale: list[float]
    coefficients: list[float]
    intercept: float
    metrics: dict[str, float] = Field(default_factory=dict)
    trained_on: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelArtifact:
        unknown = {c.name for c in self.numeric} - set(NUMERIC_FEATURES)
        unknown |= {c.name for c in self.categorical} - set(CATEGORICAL_FEATURES)
        if unknown:
            raise ValueError(
                f"the model uses features Mendline does not compute: {sorted(unknown)}"
            )
        width = len(self.columns())
        for name in ("mean", "scale", "coefficients"):
            if len(getattr(self, name)) != width:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} values for {width} columns"
                )
        numbers = [*self.mean, *self.scale, *self.coefficients, self.intercept]
        if not all(math.isfinite(v) for v in numbers) or any(s <= 0 for s in self.scale):
            raise ValueError("the model has non-finite numbers or non-positive scales")
        return self

    def columns(self) -> list[tuple[str, str | None]]:
        """``(feature, category)`` per column; category is None for numeric ones."""
        cols: list[tuple[str, str | None]] = [(c.name, None) for c in self.numeric]
        for group in self.categorical:
            cols += [(group.name, c) for c in group.categories]
        return cols

    def vector(self, features: Features) -> list[float]:
        """The model's input row for ``features`` (transformed, one-hot, not yet scaled)."""
        return feature_row(self.numeric, self.categorical, features)

    def contributions(self, features: Features) -> dict[str, float]:
        """Each feature's share of the log-odds (one-hot columns summed per feature)."""
        shares: dict[str, float] = {}
        row = self.vector(features)
        for (name, _), x, mean, scale, coef in zip(
            self.columns(), row, self.mean, self.scale, self.coefficients, strict=True
        ):
            shares[name] = shares.get(name, 0.0) + coef * (x - mean) / scale
        return shares

    def risk(self, features: Features) -> float:
        """The probability that the failure persists."""
        logit = self.intercept + sum(self.contributions(features).values())
        return _sigmoid(logit)

    def top_factors(self, features: Features, count: int = TOP_FACTORS) -> list[str]:
        """The features that moved the risk most, largest first, with their values."""
        shares = self.contributions(features)
        ranked = sorted(shares.items(), key=lambda item: (-abs(item[1]), item[0]))
        return [
            f"{LABELS.get(name, name)} {_value(features, name)} ({share:+.2f})"
            for name, share in ranked[:count]
            if abs(share) >= 0.01
        ]


def _value(features: Features, name: str) -> str:
    value = getattr(features, name)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def canonical_artifact(artifact: ModelArtifact) -> str:
    """The artifact's canonical JSON (the audit log's): the exact text stored and hashed."""
    return canonical_json(artifact.model_dump(mode="json"))


def artifact_sha256(text: str) -> str:
    """SHA-256 of an artifact's canonical JSON text."""
    return hashlib.sha256(text.encode()).hexdigest()


class FailureModel:
    """A loaded, verified model version, ready to predict.

    Args:
        artifact: The model.
        version: Its registry version.
        sha256: The verified hash of its canonical JSON.
    """

    def __init__(self, artifact: ModelArtifact, version: int, sha256: str) -> None:
        self.artifact = artifact
        self.name = artifact.name
        self.version = version
        self.sha256 = sha256

    def predict(self, features: Features) -> Prediction:
        """How likely the failure is to persist without intervention, and why."""
        return Prediction(
            model=self.name,
            version=self.version,
            sha256=self.sha256,
            risk=min(max(self.artifact.risk(features), 0.0), 1.0),
            top_factors=self.artifact.top_factors(features),
        )

    def __repr__(self) -> str:
        return f"FailureModel({self.name}:{self.version}, sha256={self.sha256[:12]}…)"
