"""The model registry: versions of failure models in the database, and the built-in one.

``predictor_models`` keeps each version's canonical JSON artifact with its SHA-256, its
metrics and whether it is the default. The built-in model is a committed file,
``models/builtin/failure_predictor.json``, whose SHA-256 is pinned in this module
(:data:`BUILTIN_SHA256`): it is what :func:`load_model` uses until a trained version is
made the default. Every load recomputes the hash and refuses a mismatch
(:class:`~activities.predictor.errors.ModelIntegrityError`), so a model changed behind the
registry's back is never used.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import models
from activities.predictor.errors import ModelIntegrityError, ModelNotFoundError, PredictorError
from activities.predictor.model import (
    FailureModel,
    ModelArtifact,
    artifact_sha256,
    canonical_artifact,
)
from activities.storage import Database, as_utc, utcnow
from models.db_remediation import PredictorModelRow

BUILTIN_PATH = Path(models.__file__).resolve().parent / "builtin" / "failure_predictor.json"
"""Shipped as package data of ``models`` (``[tool.setuptools.package-data]``)."""
BUILTIN_NAME = "builtin"
BUILTIN_VERSION = 1
BUILTIN_SHA256 = "e4aa93d7b83a2bdf5429668894c37f5a70d8e4f8a42c8f9e074ad192d06d6c1e"
"""SHA-256 of the committed built-in artifact's canonical JSON (the file holds it plus one
final newline). ``python -m bench.predictor --write-builtin`` regenerates the file and
prints the hash to pin here."""


class ModelInfo(BaseModel):
    """A registered model version, as listed (without its coefficients)."""

    name: str
    version: int
    sha256: str
    metrics: dict[str, float]
    created_at: datetime | None = None
    is_default: bool = False
    builtin: bool = False

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME:VERSION`` → ``(name, version or None)``.

    Raises:
        ValueError: The version is not a positive whole number.
    """
    name, _, version = ref.partition(":")
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise ValueError(
            f"model version must be a positive whole number, got {version!r} in {ref!r}"
        )
    return name, int(version)


def _verified(text: str, expected: str, what: str) -> ModelArtifact:
    actual = artifact_sha256(text)
    if actual != expected:
        raise ModelIntegrityError(what, expected, actual)
    try:
        return ModelArtifact.model_validate_json(text)
    except ValidationError as exc:
        raise PredictorError(f"{what} is not a valid model artifact: {exc}") from exc


def load_builtin(path: Path = BUILTIN_PATH, sha256: str = BUILTIN_SHA256) -> FailureModel:
    """The built-in model, verified against its pinned SHA-256.

    Raises:
        ModelIntegrityError: The file was changed.
        PredictorError: The file is missing.
    """
    try:
        # The file ends with a newline, which is not part of the canonical JSON.
        text = path.read_text(encoding="utf-8").removesuffix("\n")
    except OSError as exc:
        raise PredictorError(f"the built-in model {path} cannot be read: {exc}") from exc
    artifact = _verified(text, sha256, f"the built-in model ({path})")
    return FailureModel(artifact, BUILTIN_VERSION, sha256)


def builtin_info(path: Path = BUILTIN_PATH) -> ModelInfo:
    """The built-in model as a registry entry (verified)."""
    model = load_builtin(path)
    return ModelInfo(
        name=BUILTIN_NAME,
        version=BUILTIN_VERSION,
        sha256=model.sha256,
        metrics=model.artifact.metrics,
        builtin=True,
    )


class ModelRegistry:
    """Registered failure models in Mendline's database.

    Args:
        database: Mendline's database, migrated.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    def register(self, artifact: ModelArtifact, *, default: bool = False) -> ModelInfo:
        """Store ``artifact`` as the next version of its name.

        Args:
            artifact: The trained model.
            default: Make it the default (the one predictions use).

        Raises:
            ValueError: The name is the built-in model's.
        """
        if artifact.name == BUILTIN_NAME:
            raise ValueError(f"{BUILTIN_NAME!r} is the built-in model's name; choose another")
        text = canonical_artifact(artifact)
        sha256 = artifact_sha256(text)
        with self.database.session() as session:
            latest = session.scalar(
                select(func.max(PredictorModelRow.version)).where(
                    PredictorModelRow.name == artifact.name
                )
            )
            if default:
                session.execute(update(PredictorModelRow).values(is_default=False))
            row = PredictorModelRow(
                name=artifact.name,
                version=(latest or 0) + 1,
                sha256=sha256,
                metrics=artifact.metrics,
                artifact=text,
                created_at=utcnow(),
                is_default=default,
            )
            session.add(row)
            session.flush()
            return _info(row)

    def set_default(self, name: str, version: int | None = None) -> ModelInfo:
        """Make a registered version (the latest of ``name`` if no version) the default;
        ``builtin`` clears the default so the built-in model is used.

        Raises:
            ModelNotFoundError: No such model.
        """
        with self.database.session() as session:
            if name == BUILTIN_NAME:
                session.execute(update(PredictorModelRow).values(is_default=False))
                return builtin_info()
            row = self._row(session, name, version)
            session.execute(update(PredictorModelRow).values(is_default=False))
            row.is_default = True
            session.flush()
            return _info(row)

    def list(self) -> list[ModelInfo]:
        """The built-in model, then every registered version (name, then version)."""
        with self.database.session() as session:
            rows = session.scalars(
                select(PredictorModelRow).order_by(
                    PredictorModelRow.name, PredictorModelRow.version
                )
            ).all()
            found = [_info(row) for row in rows]
        builtin = builtin_info()
        builtin.is_default = not any(info.is_default for info in found)
        return [builtin, *found]

    def load(self, name: str | None = None, version: int | None = None) -> FailureModel:
        """A model, verified: the default when no name is given, the latest version of
        ``name`` when no version is.

        Raises:
            ModelNotFoundError: No such model.
            ModelIntegrityError: Its artifact does not hash to its registered SHA-256.
        """
        if name == BUILTIN_NAME:
            if version not in (None, BUILTIN_VERSION):
                raise ModelNotFoundError(name, version)
            return load_builtin()
        with self.database.session() as session:
            if name is None:
                row = session.scalar(
                    select(PredictorModelRow).where(PredictorModelRow.is_default.is_(True))
                )
                if row is None:
                    return load_builtin()
            else:
                row = self._row(session, name, version)
            artifact = _verified(row.artifact, row.sha256, f"model {row.name}:{row.version}")
            return FailureModel(artifact, row.version, row.sha256)

    def info(self, name: str, version: int | None = None) -> tuple[ModelInfo, ModelArtifact]:
        """A version's registry entry and its verified artifact (for ``model show``).

        Raises:
            ModelNotFoundError: No such model.
            ModelIntegrityError: Its artifact does not hash to its registered SHA-256.
        """
        model = self.load(name, version)
        if name == BUILTIN_NAME:
            listed = self.list()[0]
            return listed, model.artifact
        with self.database.session() as session:
            row = self._row(session, model.name, model.version)
            return _info(row), model.artifact

    @staticmethod
    def _row(session: Session, name: str, version: int | None) -> PredictorModelRow:
        query = select(PredictorModelRow).where(PredictorModelRow.name == name)
        if version is None:
            query = query.order_by(PredictorModelRow.version.desc()).limit(1)
        else:
            query = query.where(PredictorModelRow.version == version)
        row = session.scalar(query)
        if row is None:
            raise ModelNotFoundError(name, version)
        return row


def _info(row: PredictorModelRow) -> ModelInfo:
    return ModelInfo(
        name=row.name,
        version=row.version,
        sha256=row.sha256,
        metrics=row.metrics,
        created_at=as_utc(row.created_at),
        is_default=row.is_default,
    )


def load_model(
    database: Database | None = None, name: str | None = None, version: int | None = None
) -> FailureModel:
    """The failure model to predict with, verified.

    Args:
        database: Mendline's database; None uses only the built-in model.
        name: A registered name (``builtin`` for the built-in model); None for the default
            (the registry's default version, else the built-in model).
        version: A version of ``name``; None for its latest.

    Raises:
        ModelNotFoundError: No such model.
        ModelIntegrityError: Its artifact does not hash to its registered SHA-256.
    """
    if database is None:
        if name not in (None, BUILTIN_NAME):
            raise ModelNotFoundError(str(name), version)
        return load_builtin()
    return ModelRegistry(database).load(name, version)
