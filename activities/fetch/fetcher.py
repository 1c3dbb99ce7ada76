"""The :class:`Fetcher`: guard → robots.txt → rate limit → static GET or browser render."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from activities.fetch.errors import HttpStatusFetchError, TooManyRedirectsError
from activities.fetch.guard import HostGuard, parse_url
from activities.fetch.page import FetchedPage, header_charset, resolve_media_type
from activities.fetch.ratelimit import HostRateLimiter, parse_retry_after
from activities.fetch.robots import ROBOTS_MAX_BYTES, RobotsPolicy
from activities.fetch.static import ERROR_BODY_BYTES, RawResponse, StaticClient
from models.settings import Settings
from scrapers.runtime.decode import decode_body

if TYPE_CHECKING:
    from activities.fetch.browser import BrowserRenderer

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
"""Redirect hops followed before giving up (each is checked like the first request)."""


class Fetcher:
    """Fetches pages for scrapers, politely and safely. One per worker, shared.

    Every fetch, and every redirect hop of it, passes the SSRF guard
    (:mod:`activities.fetch.guard`), the site's robots.txt (unless the source or the
    worker opted out) and a per-host rate limit, then is made with a shared httpx client
    (retries off: Temporal retries) or, with ``render=True``, in Chromium.

    Args:
        settings: The worker's settings (guard, user agent, limits, browser path).
        transport: An httpx transport for static fetches instead of the network (e.g.
            ``httpx.MockTransport``). The guard still resolves host names, so with a made-up
            host set ``allow_private_networks`` or list the host in ``allowed_hosts``.

    Example::

        async with Fetcher(settings) as fetcher:
            page = await fetcher.fetch("https://example.com/")
            html = page.text()
    """

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.guard = HostGuard(settings)
        self.limiter = HostRateLimiter(settings.host_rate_limit)
        self.robots = RobotsPolicy(settings.user_agent, self._fetch_robots_txt)
        self._static = StaticClient(settings, transport=transport)
        self._renderer: BrowserRenderer | None = None

    async def fetch(
        self, url: str, *, render: bool = False, respect_robots: bool = True
    ) -> FetchedPage:
        """Fetch one page.

        Args:
            url: An absolute http(s) URL.
            render: Load the page in Chromium and return the rendered DOM.
            respect_robots: Check robots.txt first (also off when
                ``settings.respect_robots`` is false).

        Returns:
            The page. Redirects are followed (up to :data:`MAX_REDIRECTS`).

        Raises:
            FetchError: A subclass saying what failed and whether a retry can help; see
                :mod:`activities.fetch.errors`.
        """
        check_robots = respect_robots and self.settings.respect_robots
        try:
            if render:
                return await self._render(url, check_robots=check_robots)
            return await self._fetch_static(url, check_robots=check_robots)
        except HttpStatusFetchError as exc:
            if exc.retry_after is not None and (exc.status == 429 or exc.status >= 500):
                host = httpx.URL(exc.url).host if exc.url else ""
                if host:
                    self.limiter.defer(host, exc.retry_after)
            raise

    async def _fetch_static(self, url: str, *, check_robots: bool) -> FetchedPage:
        response, elapsed_ms = await self._follow(url, check_robots=check_robots)
        content_type = response.headers.get("content-type")
        charset = header_charset(content_type)
        if not 200 <= response.status < 300:
            raise HttpStatusFetchError(
                response.url,
                status=response.status,
                reason=response.reason,
                body_start=decode_body(response.body, charset)[:ERROR_BODY_BYTES],
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return FetchedPage(
            url=url,
            final_url=response.url,
            status=response.status,
            headers=response.headers,
            content_type=resolve_media_type(response.url, content_type, response.body),
            charset=charset,
            body=response.body,
            rendered=False,
            elapsed_ms=elapsed_ms,
        )

    async def _follow(
        self,
        url: str,
        *,
        check_robots: bool,
        max_bytes: int | None = None,
        truncate: bool = False,
        check_type: bool = True,
    ) -> tuple[RawResponse, float]:
        """GET ``url``, following redirects hop by hop, each hop checked anew."""
        current = url
        elapsed_ms = 0.0
        for _hop in range(MAX_REDIRECTS + 1):
            target = await self.guard.check_url(current)
            if check_robots:
                await self.robots.check(current, target.origin)
            await self.limiter.acquire(target.host)
            response = await self._static.get(
                current, max_bytes=max_bytes, truncate=truncate, check_type=check_type
            )
            elapsed_ms += response.elapsed_ms
            location = response.location
            if location is None:
                return response, elapsed_ms
            next_url = str(parse_url(current).join(location).copy_with(fragment=None))
            logger.debug("%s redirects (%d) to %s", current, response.status, next_url)
            current = next_url
        raise TooManyRedirectsError(
            f"{url} redirected more than {MAX_REDIRECTS} times (last to {current}); it is "
            "probably a redirect loop. Check the URL in a browser and use the final address",
            url=url,
        )

    async def _fetch_robots_txt(self, robots_url: str) -> RawResponse:
        response, _ = await self._follow(
            robots_url,
            check_robots=False,
            max_bytes=ROBOTS_MAX_BYTES,
            truncate=True,
            check_type=False,
        )
        return response

    async def _render(self, url: str, *, check_robots: bool) -> FetchedPage:
        target = await self.guard.check_url(url)
        if check_robots:
            await self.robots.check(url, target.origin)
        await self.limiter.acquire(target.host)
        if self._renderer is None:
            # Imported on first use: workers that never render never load Playwright.
            from activities.fetch.browser import BrowserRenderer

            self._renderer = BrowserRenderer(self.settings, self.guard)
        return await self._renderer.render(url)

    async def aclose(self) -> None:
        """Close the HTTP client and, if one was launched, the browser."""
        await self._static.aclose()
        if self._renderer is not None:
            await self._renderer.aclose()
            self._renderer = None

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
