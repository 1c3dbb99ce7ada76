"""The failure predictor: will this failure persist without intervention?

Public API::

    features_for(database, failure) -> Features      # from the telemetry tables
    load_model(database, name=None, version=None)    # -> FailureModel, SHA-256 verified
    predict(features, model=None) -> Prediction      # model None: the built-in model
    ModelRegistry(database)                          # register / list / load / set_default

Models are standardised logistic regressions stored as JSON (never pickles), identified by
the SHA-256 of their canonical JSON; see :mod:`~activities.predictor.model`. A built-in
model, trained on generated telemetry (:mod:`~activities.predictor.generator`), works on a
fresh install; ``mendline model train`` fits one on the real telemetry
(:mod:`~activities.predictor.train`).
"""

from __future__ import annotations

from activities.predictor.errors import (
    ModelIntegrityError,
    ModelNotFoundError,
    NotEnoughDataError,
    PredictorError,
)
from activities.predictor.features import ERROR_CLASSES, error_class_of, features_for
from activities.predictor.model import FailureModel, ModelArtifact
from activities.predictor.registry import ModelInfo, ModelRegistry, load_builtin, load_model
from models.remediation import Features, Prediction

__all__ = [
    "ERROR_CLASSES",
    "FailureModel",
    "ModelArtifact",
    "ModelInfo",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ModelRegistry",
    "NotEnoughDataError",
    "PredictorError",
    "error_class_of",
    "features_for",
    "load_builtin",
    "load_model",
    "predict",
]


def predict(features: Features, model: FailureModel | None = None) -> Prediction:
    """How likely a failure with ``features`` is to persist, with its top factors.

    Args:
        features: From :func:`features_for`.
        model: From :func:`load_model`; None uses the built-in model.

    Raises:
        ModelIntegrityError: ``model`` is None and the built-in artifact was changed.
    """
    return (model or load_builtin()).predict(features)
