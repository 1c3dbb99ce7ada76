"""One HTTP GET, one hop: the shared httpx client, the byte cap, errors mapped to the tree.

Redirects are not followed here (``follow_redirects=False``): the fetcher follows them
itself so the SSRF guard, robots.txt and the rate limit see every hop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from activities.fetch.errors import (
    BodyTooLargeError,
    ConnectError,
    DnsError,
    FetchTimeoutError,
    InvalidUrlError,
)
from activities.fetch.page import check_readable
from models.settings import Settings

ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,application/json;q=0.8,"
    "text/plain;q=0.7,*/*;q=0.5"
)
ERROR_BODY_BYTES = 8 * 1024
"""How much of an error response is read: enough for a message and block markers."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DNS_MARKERS = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated",
    "getaddrinfo failed",
)


@dataclass(frozen=True)
class RawResponse:
    """The answer to one request.

    Attributes:
        url: The URL requested (redirects are not followed).
        status: HTTP status.
        reason: HTTP reason phrase.
        headers: Response headers, names in lower case (repeated headers joined by ", ").
        body: The body; only its start for error statuses, empty for redirects.
        elapsed_ms: Time from sending the request to the end of the body.
    """

    url: str
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    elapsed_ms: float

    @property
    def location(self) -> str | None:
        """The redirect target, when this is a redirect with a ``Location``."""
        if self.status in REDIRECT_STATUSES:
            return self.headers.get("location") or None
        return None


class StaticClient:
    """The worker's shared httpx client for static fetches.

    Args:
        settings: ``user_agent``, ``fetch_timeout`` and ``fetch_max_bytes`` are used.
        transport: An httpx transport to use instead of the network (tests, proxies).
            By default a transport with its own retries off: Temporal owns retries.
    """

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.timeout = settings.fetch_timeout
        self.max_bytes = settings.fetch_max_bytes
        self._client = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(retries=0),
            headers={"User-Agent": settings.user_agent, "Accept": ACCEPT},
            timeout=httpx.Timeout(settings.fetch_timeout),
            follow_redirects=False,
        )

    async def get(
        self,
        url: str,
        *,
        max_bytes: int | None = None,
        truncate: bool = False,
        check_type: bool = True,
    ) -> RawResponse:
        """GET ``url`` without following redirects.

        The whole exchange, body included, must finish within ``fetch_timeout``, so a
        server trickling bytes cannot hold a worker slot forever.

        Args:
            url: An absolute URL, already checked by the guard.
            max_bytes: Largest body accepted (default ``fetch_max_bytes``), after
                decompression; a declared ``Content-Length`` over it fails before reading.
            truncate: Keep the first ``max_bytes`` instead of failing (robots.txt).
            check_type: Refuse unreadable content types before reading a successful body.

        Raises:
            BodyTooLargeError, NotHtmlError, DnsError, ConnectError, FetchTimeoutError,
            InvalidUrlError.
        """
        limit = max_bytes or self.max_bytes
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.timeout):
                status, reason, headers, body = await self._exchange(
                    url, limit=limit, truncate=truncate, check_type=check_type
                )
        except TimeoutError:
            raise self._timeout(url) from None
        except httpx.TimeoutException as exc:
            raise self._timeout(url, type(exc).__name__) from None
        except httpx.ConnectError as exc:
            detail = str(exc) or type(exc).__name__
            if any(marker in detail.lower() for marker in _DNS_MARKERS):
                raise DnsError(
                    f"cannot resolve the host of {url}: {detail}; check the URL's spelling, or "
                    "the worker's DNS if the name is right (it will be retried)",
                    url=url,
                ) from None
            raise ConnectError(
                f"cannot connect to {url}: {detail}; the server is down or refusing "
                "connections (it will be retried)",
                url=url,
            ) from None
        except httpx.TransportError as exc:
            raise ConnectError(
                f"the connection to {url} broke: {str(exc) or type(exc).__name__} "
                "(it will be retried)",
                url=url,
            ) from None
        except httpx.InvalidURL as exc:
            raise InvalidUrlError(f"{url!r} is not a valid URL ({exc})", url=url) from None
        return RawResponse(
            url=url,
            status=status,
            reason=reason,
            headers=headers,
            body=body,
            elapsed_ms=(loop.time() - started) * 1000,
        )

    async def _exchange(
        self, url: str, *, limit: int, truncate: bool, check_type: bool
    ) -> tuple[int, str, dict[str, str], bytes]:
        async with self._client.stream("GET", url) as response:
            status = response.status_code
            headers = dict(response.headers.items())
            reason = response.reason_phrase
            if status in REDIRECT_STATUSES and headers.get("location"):
                return status, reason, headers, b""
            if status >= 400:
                # Only the start of an error page is kept: enough to explain the failure,
                # and a huge error page still surfaces as its status, not as too large.
                return status, reason, headers, await read_start(response, ERROR_BODY_BYTES)
            if check_type:
                check_readable(url, headers.get("content-type"))
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit and not truncate:
                raise BodyTooLargeError(
                    url, limit=limit, detail=f"declares {int(declared):,} bytes (Content-Length)"
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                chunks.append(chunk)
                if size > limit:
                    if truncate:
                        break
                    raise BodyTooLargeError(
                        url, limit=limit, detail=f"passed {size:,} bytes before being cut off"
                    )
            return status, reason, headers, b"".join(chunks)[:limit]

    def _timeout(self, url: str, kind: str = "") -> FetchTimeoutError:
        what = f" ({kind})" if kind else ""
        return FetchTimeoutError(
            f"{url} did not answer completely within {self.timeout:g}s{what}; it will be "
            "retried. If the site is just slow, raise MENDLINE_FETCH_TIMEOUT",
            url=url,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


async def read_start(response: httpx.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body; the rest is never downloaded."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]
