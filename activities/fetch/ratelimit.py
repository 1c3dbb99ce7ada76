"""A per-host request spacing limiter, so one worker never hammers a site."""

from __future__ import annotations

import asyncio
import logging
import time
from email.utils import parsedate_to_datetime

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 60.0
"""Longest ``Retry-After`` honoured by waiting (seconds). A longer one still delays later
requests by this much; the failed fetch itself is retried by Temporal."""


class HostRateLimiter:
    """Spaces requests to each host at least ``1 / rate`` seconds apart.

    Spacing (not a token bucket) is deliberate: sites see an even trickle rather than
    bursts. Requests to one host queue on that host's lock in arrival order; hosts do
    not wait for each other.

    Args:
        rate: Most requests per second to one host.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"host rate limit must be positive, got {rate!r}")
        self.interval = 1.0 / rate
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, host: str) -> float:
        """Wait until a request to ``host`` may start.

        Returns:
            Seconds waited.
        """
        key = host.lower()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = time.monotonic()
            wait = max(0.0, self._next.get(key, now) - now)
            if wait > 0:
                await asyncio.sleep(wait)
            self._next[key] = time.monotonic() + self.interval
            return wait

    def defer(self, host: str, seconds: float) -> None:
        """Hold back later requests to ``host`` (a ``Retry-After`` answer).

        Args:
            host: The host that asked to slow down.
            seconds: How long it asked for; capped at :data:`MAX_RETRY_AFTER`.
        """
        seconds = min(max(seconds, 0.0), MAX_RETRY_AFTER)
        key = host.lower()
        until = time.monotonic() + seconds
        if until > self._next.get(key, 0.0):
            logger.info("host %s asked to slow down; next request in %.1fs", host, seconds)
            self._next[key] = until


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())
