"""The failure predictor on SQLite and PostgreSQL: features from real telemetry rows, the
built-in model (pinned hash, works on a fresh install, reproducible from the generator),
the registry (versions, default, refusing a tampered artifact) and ``mendline model``."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from activities.predictor import (
    ModelIntegrityError,
    ModelNotFoundError,
    ModelRegistry,
    error_class_of,
    features_for,
    load_builtin,
    load_model,
    predict,
)
from activities.predictor.errors import NotEnoughDataError, PredictorError
from activities.predictor.generator import generate, write_telemetry
from activities.predictor.model import ModelArtifact, canonical_artifact
from activities.predictor.registry import BUILTIN_PATH, BUILTIN_SHA256, parse_ref
from activities.predictor.train import (
    fit,
    samples_from_database,
    samples_from_generated,
    train_builtin,
)
from activities.storage import Database, upsert
from models.db_sources import SourceRow, SourceRunRow
from models.remediation import FailureContext, Features
from workers.cli.main import app

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def attempt(
    run: int,
    n: int,
    status: str,
    *,
    hours: float,
    ms: float = 1000.0,
    records: int | None = 100,
    error: str | None = None,
    message: str | None = None,
    task: str = "extract",
) -> dict[str, Any]:
    started = T0 + timedelta(hours=hours, seconds=10 * n)
    return {
        "run_id": f"pipeline/orders/{run}",
        "pipeline": "orders",
        "task": task,
        "task_type": "http",
        "attempt": n,
        "mode": "activity",
        "status": status,
        "cached": False,
        "started_at": started,
        "ended_at": started + timedelta(milliseconds=ms),
        "duration_ms": ms,
        "error_type": error,
        "error_message": message,
        "records_in": None,
        "records_out": records if status == "SUCCEEDED" else None,
        "worker": "test",
    }


# --- features -------------------------------------------------------------------------------------


def test_features_from_task_attempts(db: Database) -> None:
    rows = []
    # Ten hourly runs: durations around 1 s, 100 records; runs 3 and 6 needed a retry.
    for run in range(10):
        if run in (3, 6):
            rows.append(attempt(run, 1, "FAILED", hours=run, ms=200, error="HttpTransportError"))
            rows.append(attempt(run, 2, "SUCCEEDED", hours=run, ms=1000 + run))
        else:
            rows.append(attempt(run, 1, "SUCCEEDED", hours=run, ms=1000 + 10 * run))
    # The last success dropped to 20 records; then run 10 fails three times, slowly.
    rows[-1]["records_out"] = 20
    for n in (1, 2, 3):
        rows.append(
            attempt(
                10,
                n,
                "FAILED",
                hours=15,
                ms=5000,
                error="HttpStatusError",
                message="HTTP 401 Unauthorized: token expired",
            )
        )
    rows.append(attempt(0, 1, "SUCCEEDED", hours=0, task="other"))  # another task: ignored
    db.record_attempts(rows)
    failure = FailureContext(
        pipeline="orders",
        run_id="pipeline/orders/10",
        task="extract",
        task_type="http",
        error_type="HttpStatusError",
        message="HTTP 401 Unauthorized: token expired",
        attempts=3,
        at=T0 + timedelta(hours=15, minutes=1),
    )
    features = features_for(db, failure)
    assert features.recent_failure_rate == pytest.approx(2 / 12)
    assert features.attempts == 3
    assert features.error_class == "auth"
    assert features.runs_seen == 10
    # The last success ended at 09:00:11.09 (run 9); the failure came at 15:01.
    assert features.hours_since_success == pytest.approx(6 + (60 - 11.09) / 3600)
    # 5000 ms against a median near 1040 ms: far out, clipped at 10.
    assert features.duration_zscore == 10.0
    assert features.volume_change == pytest.approx(-0.8)
    assert features.source_health == 0.0

    risk = predict(features)
    assert 0 < risk.risk < 1 and risk.model == "builtin"
    assert risk.top_factors and all("(" in f for f in risk.top_factors)


def test_a_task_without_history_gets_neutral_features(db: Database) -> None:
    features = features_for(
        db, FailureContext(pipeline="new", task="t", error_type="TimeoutError", attempts=3)
    )
    assert features == Features(attempts=3, error_class="timeout")


def test_scrape_tasks_and_sources_carry_the_source_health(db: Database) -> None:
    with db.session() as session:
        upsert(
            session,
            SourceRow.__table__,  # type: ignore[arg-type]
            [
                {
                    "name": "books",
                    "url": "https://books.example/",
                    "config": {},
                    "status": "QUARANTINED",
                    "active_version": 1,
                    "created_at": T0,
                    "updated_at": T0,
                    "removed_at": None,
                }
            ],
            ["name"],
        )
        for n in range(6):
            failed = n >= 4
            session.add(
                SourceRunRow(
                    run_id=f"source/books/{n}",
                    source="books",
                    version=1,
                    status="FAILED" if failed else "SUCCEEDED",
                    stats={"records": 50, "error_type": "FetchTimeoutError" if failed else None},
                    started_at=T0 + timedelta(hours=n),
                    ended_at=T0 + timedelta(hours=n, seconds=30),
                )
            )
    task = features_for(
        db,
        FailureContext(
            pipeline="p",
            task="scrape",
            task_type="scrape",
            params={"source": "books"},
            error_type="FetchTimeoutError",
        ),
    )
    assert task.source_health == 2.0
    source = features_for(
        db,
        FailureContext(
            kind="source",
            source="books",
            run_id="source/books/5",
            error_type="FetchTimeoutError",
            error_class="timeout",
            at=T0 + timedelta(hours=5, minutes=1),
        ),
    )
    assert (source.source_health, source.error_class, source.runs_seen) == (2.0, "timeout", 5)
    assert source.recent_failure_rate == pytest.approx(1 / 5)
    assert source.hours_since_success == pytest.approx(2 + 1 / 60 - 30 / 3600, abs=1e-6)


@pytest.mark.parametrize(
    ("error_type", "error_class", "message", "expected"),
    [
        ("FetchHttpStatusError", "rate_limited", "HTTP 429", "rate_limited"),
        ("HttpStatusError", None, "HTTP 429 Too Many Requests", "rate_limited"),
        ("HttpStatusError", None, "HTTP 401 Unauthorized", "auth"),
        ("FetchHttpStatusError", "http_4xx", "status 403 from the site", "auth"),
        ("HttpStatusError", None, "HTTP 503 Service Unavailable", "http_5xx"),
        ("FetchDnsError", "dns", "", "network"),
        ("SelectorDriftError", None, "", "parse_error"),
        ("DataValidationError", None, "3 rows failed", "validation"),
        ("TaskConfigError", None, "", "config"),
        ("MemoryError", None, "", "resource"),
        ("RuntimeError", None, "the job ran out of memory", "resource"),
        ("RuntimeError", None, "something odd", "unknown"),
    ],
)
def test_error_classes(
    error_type: str, error_class: str | None, message: str, expected: str
) -> None:
    assert error_class_of(error_type, error_class, message) == expected


def test_training_through_the_database_sees_what_the_generator_made(db: Database) -> None:
    """Telemetry written to real tables and read back labels the same failures with the
    same features as the in-memory histories: one feature code path for both."""
    tasks = generate(3, pipelines=3, tasks_per_pipeline=4, days=10)
    write_telemetry(db, tasks)
    from_db = samples_from_database(db)
    in_memory = samples_from_generated(tasks)
    assert len(from_db) > 20

    def key(sample: Any) -> str:
        return json.dumps([sample.features.model_dump(), sample.persisted], sort_keys=True)

    rounded = Counter(key(s) for s in from_db)
    assert rounded == Counter(key(s) for s in in_memory)


# --- the built-in model ---------------------------------------------------------------------------


def test_the_builtin_model_works_without_a_database() -> None:
    model = load_model()
    assert (model.name, model.version, model.sha256) == ("builtin", 1, BUILTIN_SHA256)
    assert model.artifact.metrics["auc"] >= 0.7
    persistent = predict(
        Features(
            error_class="parse_error",
            attempts=1,
            recent_failure_rate=0.8,
            hours_since_success=30,
            runs_seen=50,
        )
    )
    transient = predict(Features(error_class="timeout", attempts=3, runs_seen=50))
    assert persistent.risk > 0.7 > 0.3 > transient.risk
    assert persistent.top_factors[0].startswith("error class parse_error (+")
    assert predict(Features()) == predict(Features())


def test_the_builtin_artifact_is_plain_json_and_reproducible() -> None:
    text_ = BUILTIN_PATH.read_text(encoding="utf-8")
    data = json.loads(text_)
    assert data["format"] == "mendline-failure-model/1"
    assert data["trained_on"] == {
        "samples": data["trained_on"]["samples"],
        "seed": 7,
        "source": "generated",
    }
    retrained = train_builtin()
    committed = load_builtin().artifact
    assert retrained.columns() == committed.columns()
    assert retrained.coefficients == pytest.approx(committed.coefficients, abs=1e-6)
    assert retrained.metrics == committed.metrics


def test_a_tampered_builtin_file_is_refused(tmp_path: Path) -> None:
    data = json.loads(BUILTIN_PATH.read_text(encoding="utf-8"))
    data["intercept"] += 3.0  # a model that says "everything persists"
    forged = tmp_path / "failure_predictor.json"
    forged.write_text(canonical_artifact(ModelArtifact.model_validate(data)) + "\n")
    with pytest.raises(ModelIntegrityError, match="refusing to load the built-in model"):
        load_builtin(forged)


# --- the registry -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> ModelArtifact:
    samples = samples_from_generated(generate(5, pipelines=4, tasks_per_pipeline=4, days=20))
    return fit(samples, name="prod", trained_on={"source": "test"})


def test_registry_versions_default_and_load(db: Database, trained: ModelArtifact) -> None:
    registry = ModelRegistry(db)
    assert [(i.ref, i.is_default, i.builtin) for i in registry.list()] == [
        ("builtin:1", True, True)
    ]
    first = registry.register(trained)
    second = registry.register(trained, default=True)
    assert (first.version, second.version) == (1, 2)
    assert first.sha256 == second.sha256 and len(first.sha256) == 64
    assert set(first.metrics) == {"auc", "n_train", "n_test", "positive_rate"}
    assert [(i.ref, i.is_default) for i in registry.list()] == [
        ("builtin:1", False),
        ("prod:1", False),
        ("prod:2", True),
    ]
    default = load_model(db)
    assert (default.name, default.version) == ("prod", 2)
    assert load_model(db, "prod", 1).version == 1
    assert load_model(db, "prod").version == 2
    features = Features(error_class="auth", attempts=1)
    assert default.predict(features).risk == pytest.approx(trained.risk(features))
    registry.set_default("prod", 1)
    assert load_model(db).version == 1
    registry.set_default("builtin")
    assert load_model(db).name == "builtin"
    with pytest.raises(ModelNotFoundError, match="no model 'prod:9' is registered"):
        load_model(db, "prod", 9)
    with pytest.raises(ValueError, match="built-in model's name"):
        registry.register(trained.model_copy(update={"name": "builtin"}))


def test_a_tampered_registered_artifact_is_refused(db: Database, trained: ModelArtifact) -> None:
    registry = ModelRegistry(db)
    registry.register(trained, default=True)
    with db.engine.begin() as conn:
        artifact = conn.execute(text("SELECT artifact FROM predictor_models")).scalar_one()
        forged = artifact.replace('"intercept":', '"intercept":9', 1)
        conn.execute(text("UPDATE predictor_models SET artifact = :a"), {"a": forged})
    with pytest.raises(ModelIntegrityError, match=r"refusing to load model prod:1"):
        load_model(db)
    with pytest.raises(ModelIntegrityError):
        registry.info("prod", 1)


class _Boom:
    """Unpickling this would create the file: proof that loading never unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_an_artifact_that_is_not_model_json_is_refused_without_running_it(
    db: Database, trained: ModelArtifact, tmp_path: Path
) -> None:
    import base64
    import hashlib
    import pickle

    registry = ModelRegistry(db)
    registry.register(trained, default=True)
    marker = tmp_path / "pwned"
    payload = base64.b64encode(pickle.dumps(_Boom(marker))).decode()
    for forged in (payload, json.dumps({"pickle": payload})):
        sha = hashlib.sha256(forged.encode()).hexdigest()  # a consistent forgery
        with db.engine.begin() as conn:
            conn.execute(
                text("UPDATE predictor_models SET artifact = :a, sha256 = :s"),
                {"a": forged, "s": sha},
            )
        with pytest.raises(PredictorError, match="is not a valid model artifact"):
            load_model(db)
    assert not marker.exists()


def test_parse_ref() -> None:
    assert parse_ref("prod") == ("prod", None)
    assert parse_ref("prod:3") == ("prod", 3)
    with pytest.raises(ValueError, match="positive whole number"):
        parse_ref("prod:x")


def test_training_needs_both_outcomes() -> None:
    samples = samples_from_generated(generate(5, pipelines=1, tasks_per_pipeline=1, days=2))
    with pytest.raises(NotEnoughDataError, match="not enough telemetry to train on"):
        fit(samples, name="x", trained_on={})


# --- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Iterator[Database]:
    for name in list(os.environ):
        if name.startswith("MENDLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MENDLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MENDLINE_DATABASE_URL", db_url)
    monkeypatch.setenv("MENDLINE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("COLUMNS", "250")
    database = Database(db_url)
    yield database
    database.dispose()


def mendline(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_cli_train_list_show_default(cli_db: Database) -> None:
    listed = mendline("model", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(m["name"], m["is_default"]) for m in json.loads(listed.stdout)] == [("builtin", True)]

    empty = mendline("model", "train")
    assert empty.exit_code == 1
    assert "not enough telemetry to train on: 0 failed runs" in empty.output

    write_telemetry(cli_db, generate(5, pipelines=4, tasks_per_pipeline=4, days=20))
    trained = mendline("model", "train", "--name", "prod", "--default")
    assert trained.exit_code == 0, trained.output
    assert trained.stdout.startswith("registered prod:1 sha256 ")
    assert "held-out AUC 0." in trained.stdout
    assert "it is now the default" in trained.stdout

    table = mendline("model", "list")
    assert table.exit_code == 0
    rows = [line for line in table.stdout.splitlines() if "prod:1" in line or "builtin:1" in line]
    assert len(rows) == 2 and "✓" in rows[1] and "built in" in rows[0]

    shown = mendline("model", "show", "prod")
    assert shown.exit_code == 0, shown.output
    assert "prod:1 (default)" in shown.stdout and "(verified)" in shown.stdout
    assert "error class = auth" in shown.stdout
    as_json = json.loads(mendline("model", "show", "prod:1", "--json").stdout)
    assert as_json["artifact"]["format"] == "mendline-failure-model/1"

    back = mendline("model", "default", "builtin")
    assert back.exit_code == 0 and "predictions now use builtin:1" in back.stdout
    assert load_model(cli_db).name == "builtin"

    with cli_db.engine.begin() as conn:
        conn.execute(text("UPDATE predictor_models SET sha256 = :s"), {"s": "0" * 64})
    refused = mendline("model", "show", "prod:1")
    assert refused.exit_code == 1
    assert "refusing to load model prod:1" in refused.output
    assert mendline("model", "default", "prod").exit_code == 1
    assert mendline("model", "show", "nope").exit_code == 1
    assert mendline("model", "show", "prod:zero").exit_code == 2
    assert mendline("model", "train", "--name", "builtin").exit_code == 2
