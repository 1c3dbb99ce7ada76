"""Errors of the failure predictor.

Hierarchy::

    PredictorError
    ├── ModelNotFoundError      no registered model has that name (and version)
    ├── ModelIntegrityError     an artifact's SHA-256 is not the one registered (refused)
    └── NotEnoughDataError      too few labelled failures to train on
"""

from __future__ import annotations


class PredictorError(Exception):
    """Base of the predictor's errors; ``type_name`` is the ApplicationError type."""

    type_name = "PredictorError"


class ModelNotFoundError(PredictorError, LookupError):
    """No registered model has the name (and version); the message says how to list them."""

    type_name = "ModelNotFoundError"

    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        what = f"{name}:{version}" if version is not None else name
        super().__init__(f"no model {what!r} is registered; list them with `mendline model list`")


class ModelIntegrityError(PredictorError):
    """An artifact does not hash to the SHA-256 recorded for it, so it is not loaded."""

    type_name = "ModelIntegrityError"

    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"refusing to load {what}: its artifact's SHA-256 is {actual[:16]}…, but "
            f"{expected[:16]}… is registered (the artifact was changed after it was "
            "registered; retrain with `mendline model train` or restore it)"
        )


class NotEnoughDataError(PredictorError, ValueError):
    """Too few labelled failures (or of one label) to fit and score a model."""

    type_name = "NotEnoughDataError"

    def __init__(
        self, samples: int, positives: int, negatives: int, min_samples: int, min_per_class: int
    ) -> None:
        self.samples = samples
        self.positives = positives
        self.negatives = negatives
        super().__init__(
            f"not enough telemetry to train on: {samples} failed runs with a known next run "
            f"({positives} persisted, {negatives} did not); need at least {min_samples}, "
            f"with {min_per_class} of each. The built-in model stays in use until then."
        )
