"""Helpers shared by the CLI's command modules: settings, async running, output."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from temporalio.client import Client

from models.settings import Settings

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def get_settings() -> Settings:
    """Settings from the environment, with a readable error for bad values."""
    try:
        return Settings()
    except ValueError as exc:
        fail(f"invalid MENDLINE_* setting: {exc}")


async def cli_client() -> Client:
    """A Temporal client for a CLI command, or exit with how to start a server."""
    from workers.client import TemporalUnavailableError, connect

    try:
        return await connect(get_settings(), sdk_metrics=False)
    except TemporalUnavailableError as exc:
        fail(str(exc))


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The SDK's own per-poll logs are noise at INFO for a CLI user.
    logging.getLogger("temporalio").setLevel(logging.WARNING)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a synchronous Typer command."""
    return asyncio.run(coro)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    """Print machine-readable JSON on stdout (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; the value is read as JSON when it parses, else kept as text."""
    if "=" not in text:
        fail(f"--param {text!r} is not of the form key=value (e.g. --param day=2026-11-20)", 2)
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        fail(f"--param {text!r} has an empty key", 2)
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    # A bare date or word stays a string even if JSON would reject it; numbers become numbers.
    return key, value
