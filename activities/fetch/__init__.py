"""The fetch layer scrapers use: safe, polite page fetching with optional rendering.

Usage::

    from activities.fetch import Fetcher, looks_script_built

    async with Fetcher(settings) as fetcher:
        page = await fetcher.fetch(url)
        if looks_script_built(page):
            page = await fetcher.fetch(url, render=True)

Every request — redirect hops and, when rendering, everything the page loads — passes
the SSRF guard (:mod:`~activities.fetch.guard`); pages are checked against robots.txt
(:mod:`~activities.fetch.robots`) and spaced per host (:mod:`~activities.fetch.ratelimit`).
Failures raise one error tree (:mod:`~activities.fetch.errors`) whose ``retryable`` and
``type_name`` map straight onto Temporal's ``ApplicationError``.
"""

from activities.fetch.detect import looks_script_built
from activities.fetch.errors import (
    BodyTooLargeError,
    ConnectError,
    DnsError,
    FetchError,
    FetchTimeoutError,
    HttpStatusFetchError,
    InvalidUrlError,
    NotHtmlError,
    RenderError,
    RobotsDisallowedError,
    TooManyRedirectsError,
    UrlNotAllowedError,
)
from activities.fetch.fetcher import MAX_REDIRECTS, Fetcher
from activities.fetch.page import FetchedPage

__all__ = [
    "MAX_REDIRECTS",
    "BodyTooLargeError",
    "ConnectError",
    "DnsError",
    "FetchError",
    "FetchTimeoutError",
    "FetchedPage",
    "Fetcher",
    "HttpStatusFetchError",
    "InvalidUrlError",
    "NotHtmlError",
    "RenderError",
    "RobotsDisallowedError",
    "TooManyRedirectsError",
    "UrlNotAllowedError",
    "looks_script_built",
]
