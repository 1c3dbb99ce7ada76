"""The one place Temporal clients are built (worker, CLI, tests, benchmarks)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from models.settings import Settings


class TemporalUnavailableError(RuntimeError):
    """No Temporal frontend answered at the configured address."""


async def connect(settings: Settings | None = None, *, address: str | None = None) -> Client:
    """Connect to Temporal with Mendline's pydantic data converter.

    Args:
        settings: Process settings; read from the environment when omitted.
        address: Overrides the address from settings (tests, benchmarks).

    Raises:
        TemporalUnavailableError: Nothing answered; the message says how to start a server.
    """
    settings = settings or Settings()
    target = address or settings.resolved_temporal_address
    try:
        return await Client.connect(
            target,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as exc:
        hint = (
            "start the embedded server with `mendline server` (or `mendline up`)"
            if settings.embedded and address is None
            else "check MENDLINE_TEMPORAL_ADDRESS and that the cluster is up"
        )
        raise TemporalUnavailableError(f"cannot reach Temporal at {target}: {exc}; {hint}") from exc
