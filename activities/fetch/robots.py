"""robots.txt: fetched once per site, cached for an hour, checked before every fetch.

Failure policy (after Google's): a 4xx robots.txt (none published) allows everything; a
5xx or an unreachable one also allows, with a warning, and is asked for again sooner.
Parsing is :mod:`urllib.robotparser`'s, which applies the first matching rule rather than
the longest; sites rarely depend on the difference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

from activities.fetch.errors import FetchError, RobotsDisallowedError
from activities.fetch.static import RawResponse

logger = logging.getLogger(__name__)

ROBOTS_TTL = 3600.0
"""Seconds a fetched robots.txt is trusted."""
ROBOTS_FAILURE_TTL = 600.0
"""Seconds an unreachable robots.txt counts as allowing everything before it is retried."""
ROBOTS_MAX_BYTES = 512 * 1024
"""Only the start of a larger robots.txt is read (Google reads 500 KiB)."""

RobotsFetch = Callable[[str], Awaitable[RawResponse]]
"""Fetches a robots.txt URL (through the guard, following redirects)."""


@dataclass(frozen=True)
class _Rules:
    parser: RobotFileParser
    expires: float


class RobotsPolicy:
    """Answers "may this user agent fetch this URL?" from the site's robots.txt.

    Args:
        user_agent: The User-Agent whose rules apply (its product token, before ``/``,
            is what robots.txt ``User-agent`` lines match).
        fetch: How robots.txt files are fetched.
    """

    def __init__(self, user_agent: str, fetch: RobotsFetch) -> None:
        self.user_agent = user_agent
        self._fetch = fetch
        self._rules: dict[str, _Rules] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def check(self, url: str, origin: str) -> None:
        """Raise when robots.txt of ``origin`` disallows ``url``.

        Args:
            url: The URL about to be fetched.
            origin: Its ``scheme://host:port``.

        Raises:
            RobotsDisallowedError: The site disallows the URL for our user agent.
        """
        parser = await self._parser(origin)
        if not parser.can_fetch(self.user_agent, url):
            raise RobotsDisallowedError(
                url, robots_url=_robots_url(origin), user_agent=self.user_agent
            )

    async def _parser(self, origin: str) -> RobotFileParser:
        cached = self._rules.get(origin)
        if cached is not None and cached.expires > time.monotonic():
            return cached.parser
        # One fetch per site even when many pages of it are fetched at once.
        async with self._locks.setdefault(origin, asyncio.Lock()):
            cached = self._rules.get(origin)
            if cached is not None and cached.expires > time.monotonic():
                return cached.parser
            parser, ttl = await self._load(_robots_url(origin))
            self._rules[origin] = _Rules(parser, time.monotonic() + ttl)
            return parser

    async def _load(self, robots_url: str) -> tuple[RobotFileParser, float]:
        parser = RobotFileParser(robots_url)
        try:
            response = await self._fetch(robots_url)
        except FetchError as exc:
            logger.warning("robots.txt unavailable, allowing all: %s", exc)
            parser.parse([])  # no rules: everything allowed
            return parser, ROBOTS_FAILURE_TTL
        if response.status >= 500 or response.status < 200 or response.location:
            logger.warning(
                "robots.txt at %s answered HTTP %d; allowing all for now",
                robots_url,
                response.status,
            )
            parser.parse([])  # no rules: everything allowed
            return parser, ROBOTS_FAILURE_TTL
        if response.status >= 400:
            # No robots.txt published (even 401/403): nothing is disallowed.
            parser.parse([])  # no rules: everything allowed
            return parser, ROBOTS_TTL
        text = response.body.decode("utf-8", errors="replace").removeprefix("\ufeff")
        parser.parse(text.splitlines())
        return parser, ROBOTS_TTL


def _robots_url(origin: str) -> str:
    return f"{origin}/robots.txt"
