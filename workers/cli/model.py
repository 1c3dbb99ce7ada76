"""``mendline model …``: train, list and show failure-prediction models.

Models live in Mendline's database (the registry) beside a built-in one that needs no
training. Nothing here needs the Temporal server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from activities.predictor import (
    ModelInfo,
    ModelRegistry,
    NotEnoughDataError,
    PredictorError,
)
from activities.predictor.model import LABELS
from activities.predictor.registry import BUILTIN_NAME, parse_ref
from activities.predictor.train import train_from_database
from activities.storage import Database
from workers.cli.common import console, fail, get_settings, print_json

model_app = typer.Typer(
    help="Failure-prediction models: train one on your telemetry, list them, show one.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")]


@contextmanager
def _registry() -> Iterator[ModelRegistry]:
    db = Database(get_settings().resolved_database_url)
    try:
        yield ModelRegistry(db)
    finally:
        db.dispose()


def _metric(info: ModelInfo, name: str, digits: int = 3) -> str:
    value = info.metrics.get(name)
    if value is None:
        return ""
    return f"{value:.{digits}f}" if name in ("auc", "positive_rate") else f"{value:g}"


@model_app.command("train")
def model_train(
    name: Annotated[str, typer.Option(help="Registry name of the new model.")] = "telemetry",
    default: Annotated[
        bool, typer.Option("--default", help="Make it the model predictions use.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train a model on the telemetry database and register it as a new version.

    Every run that failed for good and has a next run is a sample; its label is whether
    that next run failed too. A quarter is held out to measure the AUC recorded with it.
    """
    if name == BUILTIN_NAME:
        fail(f"{BUILTIN_NAME!r} is the built-in model's name; choose another with --name", 2)
    with _registry() as registry:
        try:
            artifact = train_from_database(registry.database, name, seed=seed)
        except NotEnoughDataError as exc:
            fail(str(exc))
        info = registry.register(artifact, default=default)
    if as_json:
        print_json(info.model_dump(mode="json"))
        return
    console.print(
        f"registered [bold]{escape(info.ref)}[/] sha256 {info.sha256[:16]}… — held-out AUC "
        f"{_metric(info, 'auc')} ({_metric(info, 'n_train')} train / {_metric(info, 'n_test')} "
        f"test failures, {_metric(info, 'positive_rate')} persisted)"
    )
    if default:
        console.print("it is now the default: predictions use it")
    else:
        console.print(
            f"predictions use it once it is the default: `mendline model default {info.ref}`"
        )


@model_app.command("default")
def model_default(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="NAME[:VERSION]", help="A model (latest version if none); builtin to go back."
        ),
    ],
) -> None:
    """Make a registered model the one predictions use (``builtin``: the built-in model)."""
    try:
        name, version = parse_ref(ref)
    except ValueError as exc:
        fail(str(exc), 2)
    with _registry() as registry:
        try:
            # Loading first verifies the artifact: a tampered model never becomes the default.
            registry.load(name, version)
            info = registry.set_default(name, version)
        except PredictorError as exc:
            fail(str(exc))
    console.print(f"predictions now use {escape(info.ref)} (sha256 {info.sha256[:16]}…)")


@model_app.command("list")
def model_list(as_json: JsonOpt = False) -> None:
    """List the built-in model and every registered version (the default is marked)."""
    with _registry() as registry:
        try:
            found = registry.list()
        except PredictorError as exc:
            fail(str(exc))
    if as_json:
        print_json([info.model_dump(mode="json") for info in found])
        return
    table = Table("model", "default", "sha256", "auc", "train", "test", "persisted", "created")
    for info in found:
        table.add_row(
            escape(info.ref),
            "[green]✓[/]" if info.is_default else "",
            info.sha256[:16],
            _metric(info, "auc"),
            _metric(info, "n_train"),
            _metric(info, "n_test"),
            _metric(info, "positive_rate"),
            "built in"
            if info.builtin
            else (info.created_at.strftime("%Y-%m-%d %H:%M:%S") if info.created_at else ""),
        )
    console.print(table)


@model_app.command("show")
def model_show(
    ref: Annotated[
        str, typer.Argument(metavar="NAME[:VERSION]", help="A model (latest version if none).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Show a model: its hash (verified), metrics, training data and weights."""
    try:
        name, version = parse_ref(ref)
    except ValueError as exc:
        fail(str(exc), 2)
    with _registry() as registry:
        try:
            info, artifact = registry.info(name, version)
        except PredictorError as exc:
            fail(str(exc))
    if as_json:
        print_json({**info.model_dump(mode="json"), "artifact": artifact.model_dump(mode="json")})
        return
    console.print(
        f"[bold]{escape(info.ref)}[/]" + (" [green](default)[/]" if info.is_default else "")
    )
    console.print(f"  sha256      {info.sha256} [green](verified)[/]")
    metrics = ", ".join(
        f"{k} {_metric(info, k)}" for k in ("auc", "n_train", "n_test", "positive_rate")
    )
    console.print(f"  metrics     {metrics}")
    trained = ", ".join(f"{k} {v}" for k, v in sorted(artifact.trained_on.items()))
    console.print(f"  trained on  {escape(trained)}")
    console.print(f"  intercept   {artifact.intercept:+.4f}")
    table = Table("feature", "transform", "weight (per σ)")
    weights = dict(zip(artifact.columns(), artifact.coefficients, strict=True))
    for column in artifact.numeric:
        table.add_row(
            LABELS.get(column.name, column.name),
            column.transform,
            f"{weights[(column.name, None)]:+.4f}",
        )
    for group in artifact.categorical:
        for category in group.categories:
            table.add_row(
                f"{LABELS.get(group.name, group.name)} = {category}",
                "one-hot",
                f"{weights[(group.name, category)]:+.4f}",
            )
    console.print(table)
