"""Task handlers: the interface, the built-in handlers and the registry that finds them.

Built-in task types:

============  ======================================================================
``noop``      echo the params (placeholder, pass values through)
``sleep``     wait, heartbeating
``fail``      raise a chosen error type (tests, the flaky demo)
``http``      one HTTP request; status, headers and JSON or text body
``sql``       one parameterised SQL statement; rows or row count
``python``    call ``module:function`` of an importable module
``transform`` select, rename, filter, derive, cast, sort, dedupe, limit records
``validate``  data-quality rules over records; fail or warn
``load``      idempotent upsert of records into a table by key
``scrape``    run a source's active scraper; its records
============  ======================================================================

More types come from installed packages through the ``mendline.tasks`` entry points (see
:mod:`activities.tasks.base`).
"""

from __future__ import annotations

from activities.tasks.base import (
    DataValidationError,
    ExpressionError,
    HandlerOutput,
    HandlerRegistry,
    HttpStatusError,
    TaskConfigError,
    TaskContext,
    TaskError,
    TaskHandler,
    require,
)
from activities.tasks.basic import FailHandler, InjectedFailure, NoopHandler, SleepHandler
from activities.tasks.http import (
    HttpDecodeError,
    HttpHandler,
    HttpTransportError,
    ResponseTooLargeError,
)
from activities.tasks.load import LoadHandler
from activities.tasks.python import PythonHandler
from activities.tasks.scrape import ScrapeHandler
from activities.tasks.sql import EngineCache, SqlConnectionError, SqlHandler, SqlQueryError
from activities.tasks.transform import TransformHandler
from activities.tasks.validate import ValidateHandler

__all__ = [
    "DataValidationError",
    "EngineCache",
    "ExpressionError",
    "FailHandler",
    "HandlerOutput",
    "HandlerRegistry",
    "HttpDecodeError",
    "HttpHandler",
    "HttpStatusError",
    "HttpTransportError",
    "InjectedFailure",
    "LoadHandler",
    "NoopHandler",
    "PythonHandler",
    "ResponseTooLargeError",
    "ScrapeHandler",
    "SleepHandler",
    "SqlConnectionError",
    "SqlHandler",
    "SqlQueryError",
    "TaskConfigError",
    "TaskContext",
    "TaskError",
    "TaskHandler",
    "TransformHandler",
    "ValidateHandler",
    "builtin_handlers",
    "default_registry",
    "require",
]


def builtin_handlers(engines: EngineCache | None = None) -> list[TaskHandler]:
    """One instance of each built-in handler.

    Args:
        engines: Database engines shared by ``sql`` and ``load`` (one pool per URL); a new
            cache when omitted. Pass the worker's to dispose of it on shutdown.
    """
    engines = engines or EngineCache()
    return [
        NoopHandler(),
        SleepHandler(),
        FailHandler(),
        HttpHandler(),
        SqlHandler(engines),
        PythonHandler(),
        TransformHandler(),
        ValidateHandler(),
        LoadHandler(engines),
        ScrapeHandler(),
    ]


def default_registry(
    load_entry_points: bool = True, engines: EngineCache | None = None
) -> HandlerRegistry:
    """The built-in handlers plus, unless disabled, those of ``mendline.tasks`` entry points.

    Args:
        load_entry_points: Also load handlers published by installed packages; an entry
            point with the name of a built-in replaces it.
        engines: Passed to :func:`builtin_handlers`.
    """
    registry = HandlerRegistry(builtin_handlers(engines))
    if load_entry_points:
        registry.load_entry_points()
    return registry
