"""The errors of the fetch layer: one tree, each error knowing whether a retry can help.

Activities turn them into Temporal failures without a lookup table::

    except FetchError as exc:
        raise ApplicationError(str(exc), type=exc.type_name, non_retryable=not exc.retryable)

Hierarchy (``error_class`` in brackets; ``*`` marks errors Temporal should retry)::

    FetchError
    ├── InvalidUrlError          [invalid_url]  not http(s), or no host
    ├── UrlNotAllowedError       [ssrf]         the host resolves to a private address
    ├── RobotsDisallowedError    [robots]       robots.txt disallows the URL for our agent
    ├── DnsError *               [dns]          the host name does not resolve
    ├── ConnectError *           [network]      refused, reset, broken connection
    ├── FetchTimeoutError *      [timeout]      no complete answer within the fetch timeout
    ├── HttpStatusFetchError     [http_4xx | http_5xx* | rate_limited* | blocked]
    ├── TooManyRedirectsError    [network]      more than 5 redirects (a loop, usually)
    ├── NotHtmlError             [not_html]     a content type a scraper cannot read
    ├── BodyTooLargeError        [too_large]    the body exceeds the byte limit
    └── RenderError *            [render]       the browser failed (missing binary: not retried)
"""

from __future__ import annotations

from typing import ClassVar

ERROR_CLASSES = (
    "network",
    "dns",
    "timeout",
    "http_4xx",
    "http_5xx",
    "rate_limited",
    "blocked",
    "not_html",
    "too_large",
    "robots",
    "ssrf",
    "render",
    "invalid_url",
)
"""Every value ``FetchError.error_class`` takes (a label for metrics and health reports)."""

RETRYABLE_STATUSES = frozenset({408, 429})
"""4xx statuses that a later attempt can cure (every 5xx is retried as well)."""

_BLOCK_MARKERS = (
    "captcha",
    "cf-challenge",
    "cf_chl",
    "challenge-platform",
    "challenge-form",
    "/cdn-cgi/challenge",
    "attention required",
    "are you a robot",
    "are you human",
    "verify you are human",
    "datadome",
    "perimeterx",
    "_incapsula_",
)
"""Text that anti-bot pages carry; a 401/403 with one of these is a block, not a bad URL."""


class FetchError(Exception):
    """Base of every fetch failure.

    Attributes:
        url: The URL being fetched when the error happened (a redirect hop, maybe).
        type_name: The ``ApplicationError`` type activities raise for this error.
        retryable: Whether another attempt could succeed (instances may override the class).
        error_class: A short label of the failure kind, one of :data:`ERROR_CLASSES`.
    """

    type_name: ClassVar[str] = "FetchError"
    retryable: bool = False
    error_class: str = "network"

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class InvalidUrlError(FetchError):
    """The URL is not an absolute ``http://`` or ``https://`` URL with a host."""

    type_name = "InvalidUrlError"
    error_class = "invalid_url"


class UrlNotAllowedError(FetchError):
    """The SSRF guard refused the URL: its host resolves to a non-public address.

    Attributes:
        host: The host name from the URL.
        address: The offending resolved address.
        reason: What kind of address it is (``loopback``, ``private``, ``link-local`` …).
    """

    type_name = "UrlNotAllowedError"
    error_class = "ssrf"

    def __init__(self, url: str, *, host: str, address: str, reason: str) -> None:
        super().__init__(
            f"refusing to fetch {url}: host {host!r} resolves to {address}, a {reason} "
            "address, and scrapers may only reach public addresses (SSRF guard). If this "
            "source is meant to reach internal hosts, set MENDLINE_ALLOW_PRIVATE_NETWORKS=1, "
            "or list the host or a CIDR containing it in MENDLINE_ALLOWED_HOSTS "
            f"(e.g. MENDLINE_ALLOWED_HOSTS={host if ':' not in host else address})",
            url=url,
        )
        self.host = host
        self.address = address
        self.reason = reason


class RobotsDisallowedError(FetchError):
    """The site's robots.txt disallows the URL for Mendline's user agent."""

    type_name = "RobotsDisallowedError"
    error_class = "robots"

    def __init__(self, url: str, *, robots_url: str, user_agent: str) -> None:
        super().__init__(
            f"{robots_url} disallows {url} for user agent {user_agent!r}; Mendline will not "
            "fetch it. If you have the site owner's permission, set respect_robots: false on "
            "the source (or MENDLINE_RESPECT_ROBOTS=0 for the whole worker)",
            url=url,
        )
        self.robots_url = robots_url
        self.user_agent = user_agent


class DnsError(FetchError):
    """The host name does not resolve (retried: DNS failures are often transient)."""

    type_name = "FetchDnsError"
    error_class = "dns"
    retryable = True


class ConnectError(FetchError):
    """No usable connection: refused, reset or broken mid-response (retried)."""

    type_name = "FetchConnectError"
    error_class = "network"
    retryable = True


class FetchTimeoutError(FetchError):
    """The server did not answer completely within the fetch timeout (retried)."""

    type_name = "FetchTimeoutError"
    error_class = "timeout"
    retryable = True


class HttpStatusFetchError(FetchError):
    """The server answered with an error status.

    5xx, 408 and 429 are retried; other statuses are not. A 429 is classed
    ``rate_limited``; a 401 or 403 whose body looks like an anti-bot challenge is
    classed ``blocked``.

    Attributes:
        status: The HTTP status code.
        retry_after: Seconds from the ``Retry-After`` header, when the server sent one.
        body_start: The first characters of the response body, for diagnosis.
    """

    type_name = "FetchHttpStatusError"

    def __init__(
        self,
        url: str,
        *,
        status: int,
        reason: str = "",
        body_start: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.body_start = body_start
        self.retryable = status >= 500 or status in RETRYABLE_STATUSES
        if status == 429:
            self.error_class = "rate_limited"
        elif status in (401, 403) and looks_blocked(body_start):
            self.error_class = "blocked"
        elif status >= 500:
            self.error_class = "http_5xx"
        else:
            self.error_class = "http_4xx"
        super().__init__(self._message(url, reason), url=url)

    def _message(self, url: str, reason: str) -> str:
        head = f"{url} returned HTTP {self.status}{' ' + reason if reason else ''}"
        if self.error_class == "rate_limited":
            wait = f" (Retry-After: {self.retry_after:g}s)" if self.retry_after is not None else ""
            advice = (
                f"the site is rate-limiting Mendline{wait}; it will be retried later. If it "
                "persists, lower MENDLINE_HOST_RATE_LIMIT or fetch the source less often"
            )
        elif self.error_class == "blocked":
            advice = (
                "the site answered with an anti-bot challenge or captcha; retrying will not "
                "help. Ask the site for access or an API, or disable the source"
            )
        elif self.retryable:
            advice = "a server-side or transient error; it will be retried"
        elif self.status == 404 or self.status == 410:
            advice = "the page does not exist; check the URL (not retried)"
        else:
            advice = "retrying will not change this status; check the URL and access (not retried)"
        snippet = f" Body starts: {self.body_start[:200]!r}" if self.body_start.strip() else ""
        return f"{head}: {advice}.{snippet}"


def looks_blocked(body: str) -> bool:
    """Whether an error body looks like an anti-bot challenge or captcha page."""
    lowered = body.lower()
    return any(marker in lowered for marker in _BLOCK_MARKERS)


class TooManyRedirectsError(FetchError):
    """A URL redirected too many times, usually a loop (not retried)."""

    type_name = "TooManyRedirectsError"
    error_class = "network"


class NotHtmlError(FetchError):
    """The response is a content type scrapers cannot read (an image, a PDF, a zip …).

    Attributes:
        content_type: The media type the server declared.
    """

    type_name = "NotHtmlError"
    error_class = "not_html"

    def __init__(self, url: str, *, content_type: str) -> None:
        super().__init__(
            f"{url} is {content_type!r}, not HTML, XML, JSON or plain text, so no scraper can "
            "read it; point the source at the page that links to it instead",
            url=url,
        )
        self.content_type = content_type


class BodyTooLargeError(FetchError):
    """The response body is larger than the fetch limit.

    Attributes:
        limit: The limit in bytes (``MENDLINE_FETCH_MAX_BYTES``).
    """

    type_name = "BodyTooLargeError"
    error_class = "too_large"

    def __init__(self, url: str, *, limit: int, detail: str) -> None:
        super().__init__(
            f"{url}: the response body {detail}, over the limit of {limit:,} bytes; raise "
            "MENDLINE_FETCH_MAX_BYTES if the page really is this large",
            url=url,
        )
        self.limit = limit


class RenderError(FetchError):
    """The browser failed to render the page (retried unless the browser is missing)."""

    type_name = "RenderError"
    error_class = "render"
    retryable = True

    def __init__(self, message: str, *, url: str = "", retryable: bool = True) -> None:
        super().__init__(message, url=url)
        self.retryable = retryable
