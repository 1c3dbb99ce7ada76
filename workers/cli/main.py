"""The ``mendline`` command line: a thin layer over Mendline's library and Temporal."""

from __future__ import annotations

import os
import sys
import traceback

import typer

from workers.cli import (
    alerts,
    approvals,
    audit,
    demo,
    model,
    monitor,
    ops,
    report,
    runs,
    sources,
    supervision,
)

app = typer.Typer(
    name="mendline",
    help=(
        "Mendline: durable, self-healing data pipelines on Temporal.\n\n"
        "Quick start: `mendline up -d` (embedded server + worker), then "
        "`mendline run examples/pipelines/orders.yaml --param day=2026-11-20 --wait`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command()(ops.server)
app.command()(ops.worker)
app.command()(ops.up)
app.command()(ops.down)
app.command()(ops.tasks)
app.command()(runs.validate)
app.command()(runs.run)
app.command()(runs.state)
app.command()(runs.cancel)
app.command()(sources.scout)
app.command()(sources.extract)
app.command()(report.report)
supervision.register(sources.source_app)
app.add_typer(sources.source_app, name="source")
app.add_typer(approvals.approvals_app, name="approvals")
app.add_typer(alerts.alerts_app, name="alerts")
app.add_typer(alerts.incidents_app, name="incidents")
app.add_typer(monitor.monitor_app, name="monitor")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(runs.telemetry_app, name="telemetry")
app.add_typer(ops.db_app, name="db")
app.add_typer(demo.demo_app, name="demo")
app.add_typer(model.model_app, name="model")
app.add_typer(audit.audit_app, name="audit")


def main() -> None:
    """Console-script entry point.

    Exits with ``os._exit`` after flushing output: the Temporal client's native runtime can
    still have threads calling into Python while the interpreter finalizes, which aborts the
    process (``PyGILState_Release`` fatal error) and would turn a successful command into
    exit code 134. Every command has finished its work, closed what it opened and printed
    its output by the time we get here.
    """
    try:
        app()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except Exception:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
