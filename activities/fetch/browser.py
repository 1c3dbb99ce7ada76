"""Rendering pages with Chromium through Playwright, for sites that build content in JS.

One browser per :class:`~activities.fetch.Fetcher`, launched on first use and reused; a
fresh browser context (cookies, storage, cache) per page, so renders never see each
other's state. Each context sends all its traffic through its own
:class:`~activities.fetch.proxy.GuardProxy`, which applies the SSRF guard to every
request the page makes, redirect hops included.

Chromium comes from the system (Debian's ``chromium`` package, ``MENDLINE_CHROMIUM_PATH``)
rather than ``playwright install``, which downloads its own build at install time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from playwright.async_api import Browser, Playwright, Response, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from activities.fetch.errors import (
    BodyTooLargeError,
    FetchError,
    FetchTimeoutError,
    HttpStatusFetchError,
    RenderError,
)
from activities.fetch.guard import HostGuard
from activities.fetch.page import HTML_TYPES, FetchedPage, header_charset, resolve_media_type
from activities.fetch.proxy import ERROR_HEADER, GuardProxy
from activities.fetch.ratelimit import parse_retry_after
from models.settings import Settings

logger = logging.getLogger(__name__)

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, Chromium phones home (updates, safe browsing, sync) at start-up and
    # floods a closed network with requests that never answer.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # WebRTC can open UDP to any address, around the proxy; only proxied traffic is allowed.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)
MAX_CONCURRENT_RENDERS = 4
"""Pages rendered at once per Fetcher; each context costs tens of MB of memory."""
NETWORK_IDLE_WAIT = 10.0
"""Longest wait (seconds) for the page's network to go quiet after ``load``."""
ERROR_BODY_CHARS = 2000

# The proxy is the only way out. "<-loopback>" removes Chromium's built-in exception for
# localhost, so loopback requests are checked like any other.
_PROXY_BYPASS = "<-loopback>"
_DROPPED_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


class BrowserRenderer:
    """Renders URLs with a shared, lazily launched Chromium.

    Args:
        settings: ``chromium_path``, ``user_agent``, ``fetch_timeout`` and
            ``fetch_max_bytes`` are used.
        guard: The SSRF guard every in-page request must pass.
    """

    def __init__(self, settings: Settings, guard: HostGuard) -> None:
        self.settings = settings
        self.guard = guard
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._launch_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_RENDERS)

    async def render(self, url: str) -> FetchedPage:
        """Load ``url`` in a fresh context and return the rendered DOM as HTML.

        The caller has already checked ``url`` with the guard and robots.txt. Navigation
        waits for ``load``, then up to :data:`NETWORK_IDLE_WAIT` seconds for the network
        to go idle (a page that polls forever is taken as it is then, not failed).

        A JSON, XML or plain-text response is returned as the bytes the server sent
        (``rendered=False``): there is no DOM worth rendering.

        Raises:
            RenderError: The browser is missing, crashed or could not load the page.
            UrlNotAllowedError, DnsError, ConnectError: The proxy refused or could not
                reach the page itself (not merely one of its resources).
            FetchTimeoutError: The page did not load within ``fetch_timeout``.
            HttpStatusFetchError, NotHtmlError, BodyTooLargeError: As for static fetches.
        """
        browser = await self._ensure_browser(url)
        async with self._slots:
            proxy = GuardProxy(self.guard, timeout=self.settings.fetch_timeout)
            proxy_url = await proxy.start()
            try:
                # A backstop over the whole render: Playwright's own timeouts cover each
                # step, not a browser that stops answering altogether.
                async with asyncio.timeout(self.settings.fetch_timeout + NETWORK_IDLE_WAIT + 15):
                    return await self._render_in_context(browser, proxy, proxy_url, url)
            except TimeoutError:
                raise RenderError(
                    f"the browser stopped answering while rendering {url}; it will be retried",
                    url=url,
                ) from None
            finally:
                await proxy.close()

    async def _render_in_context(
        self, browser: Browser, proxy: GuardProxy, proxy_url: str, url: str
    ) -> FetchedPage:
        try:
            context = await browser.new_context(
                user_agent=self.settings.user_agent,
                proxy={"server": proxy_url, "bypass": _PROXY_BYPASS},
                service_workers="block",
                accept_downloads=False,
            )
        except PlaywrightError as exc:
            raise RenderError(
                f"the browser could not open a context for {url}: {exc}", url=url
            ) from None
        try:
            page = await context.new_page()
            started = time.perf_counter()
            timeout_ms = self.settings.fetch_timeout * 1000
            try:
                response = await page.goto(url, wait_until="load", timeout=timeout_ms)
            except PlaywrightTimeoutError:
                raise proxy.failure_for(url) or FetchTimeoutError(
                    f"{url} did not load in the browser within {self.settings.fetch_timeout:g}s;"
                    " it will be retried. If the site is just slow, raise MENDLINE_FETCH_TIMEOUT",
                    url=url,
                ) from None
            except PlaywrightError as exc:
                raise self._navigation_error(proxy, url, exc) from None
            if response is None:
                raise RenderError(f"the browser got no response for {url}", url=url)
            if ERROR_HEADER in response.headers:
                raise proxy.failure_for(response.url) or self._navigation_error(proxy, url, None)
            try:
                idle_ms = min(NETWORK_IDLE_WAIT, self.settings.fetch_timeout) * 1000
                await page.wait_for_load_state("networkidle", timeout=idle_ms)
            except PlaywrightTimeoutError:
                logger.info("%s kept the network busy; taking the page as it is", url)
            return await self._page_result(url, page.url, response, await page.content(), started)
        except PlaywrightError as exc:
            raise RenderError(
                f"the browser failed while rendering {url}: {exc}; it will be retried", url=url
            ) from None
        finally:
            try:
                await context.close()
            except PlaywrightError as exc:  # the browser may already be gone
                logger.debug("closing a browser context failed: %s", exc)

    async def _page_result(
        self, url: str, final_url: str, response: Response, content: str, started: float
    ) -> FetchedPage:
        headers = await response.all_headers()
        status = response.status
        if status >= 400:
            raise HttpStatusFetchError(
                final_url,
                status=status,
                reason=response.status_text,
                body_start=content[:ERROR_BODY_CHARS],
                retry_after=parse_retry_after(headers.get("retry-after")),
            )
        declared = headers.get("content-type")
        body = content.encode("utf-8")
        media = resolve_media_type(final_url, declared, body)
        limit = self.settings.fetch_max_bytes
        if media not in HTML_TYPES:
            raw = await response.body()
            if len(raw) > limit:
                raise BodyTooLargeError(final_url, limit=limit, detail=f"has {len(raw):,} bytes")
            return FetchedPage(
                url=url,
                final_url=final_url,
                status=status,
                headers=headers,
                content_type=media,
                charset=header_charset(declared),
                body=raw,
                rendered=False,
                elapsed_ms=(time.perf_counter() - started) * 1000,
            )
        if len(body) > limit:
            raise BodyTooLargeError(
                final_url, limit=limit, detail=f"rendered to {len(body):,} bytes of HTML"
            )
        # The body is the serialised DOM, not what the server sent: headers describing the
        # server's bytes would mislead whoever decodes it later.
        kept = {k: v for k, v in headers.items() if k not in _DROPPED_HEADERS}
        kept["content-type"] = "text/html; charset=utf-8"
        return FetchedPage(
            url=url,
            final_url=final_url,
            status=status,
            headers=kept,
            content_type="text/html",
            charset="utf-8",
            body=body,
            rendered=True,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    @staticmethod
    def _navigation_error(proxy: GuardProxy, url: str, exc: PlaywrightError | None) -> FetchError:
        # Before the page commits, only the navigation (and its redirect hops) goes through
        # the proxy, so a failure the proxy recorded is the navigation's.
        recorded = proxy.failure_for(url) or next(iter(reversed(proxy.failures.values())), None)
        if recorded is not None:
            return recorded
        detail = str(exc).splitlines()[0] if exc is not None else "no usable response"
        return RenderError(
            f"the browser could not load {url}: {detail}; it will be retried", url=url
        )

    async def _ensure_browser(self, url: str) -> Browser:
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            path = self.settings.chromium_path
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise RenderError(
                    f"cannot render {url}: no Chromium at {path!r}. Install it "
                    "(`apt-get install chromium` on Debian/Ubuntu) or set "
                    "MENDLINE_CHROMIUM_PATH to a Chromium or Chrome binary",
                    url=url,
                    retryable=False,
                )
            try:
                if self._playwright is None:
                    self._playwright = await async_playwright().start()
                self._browser = await self._playwright.chromium.launch(
                    executable_path=path, headless=True, args=list(CHROMIUM_ARGS)
                )
            except PlaywrightError as exc:
                raise RenderError(
                    f"cannot render {url}: Chromium at {path!r} failed to start: "
                    f"{str(exc).splitlines()[0]}; check that it runs (`{path} --version`) and "
                    "that MENDLINE_CHROMIUM_PATH points at it",
                    url=url,
                ) from None
            logger.info("launched Chromium %s from %s", self._browser.version, path)
            return self._browser

    async def aclose(self) -> None:
        """Close the browser and the Playwright driver."""
        async with self._launch_lock:
            if self._browser is not None:
                try:
                    await self._browser.close()
                except PlaywrightError as exc:
                    logger.debug("closing the browser failed: %s", exc)
                self._browser = None
            if self._playwright is not None:
                await self._playwright.stop()
                self._playwright = None
