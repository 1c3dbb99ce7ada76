"""What a fetch returns, and the content types scrapers can read."""

from __future__ import annotations

from dataclasses import dataclass

from activities.fetch.errors import NotHtmlError
from scrapers.runtime.decode import charset_from_content_type, decode_body

READABLE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "application/xml",
        "text/xml",
        "application/json",
        "application/ld+json",
        "text/plain",
    }
)
"""Media types scrapers read. ``application/*+xml`` (RSS, Atom) and ``*+json`` count too."""

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


@dataclass(frozen=True)
class FetchedPage:
    """One fetched page.

    Attributes:
        url: The URL requested.
        final_url: The URL after redirects (relative links resolve against it).
        status: The HTTP status of the final response.
        headers: Response headers, names in lower case.
        content_type: The media type without parameters, e.g. ``text/html``.
        charset: The ``charset`` parameter of the ``Content-Type`` header, if any.
        body: The body bytes; for a rendered page, the rendered DOM serialised as HTML.
        rendered: True when a browser produced ``body``.
        elapsed_ms: Time spent on the network (redirect hops and body; not the time spent
            waiting for the per-host rate limit or robots.txt).
    """

    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    content_type: str
    charset: str | None
    body: bytes
    rendered: bool
    elapsed_ms: float

    def text(self) -> str:
        """The body decoded as a browser would: BOM, HTTP charset, ``<meta>``, UTF-8, cp1252."""
        return decode_body(self.body, self.charset)


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` value, lower case and without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def header_charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a ``Content-Type`` value, if any."""
    return charset_from_content_type(content_type)


def is_readable(media: str) -> bool:
    """Whether scrapers can read a body of this media type."""
    if media in READABLE_TYPES:
        return True
    kind, _, subtype = media.partition("/")
    return kind in ("application", "text") and subtype.endswith(("+xml", "+json"))


def sniff_media_type(body: bytes) -> str:
    """Guess the media type of a body sent without ``Content-Type``.

    A body starting with ``<`` is HTML, one starting with ``{`` or ``[`` is JSON, an empty
    body is treated as (empty) HTML, and anything else is left as
    ``application/octet-stream``, which is refused.
    """
    start = body[:512].lstrip(b"\xef\xbb\xbf").lstrip()
    if not start or start.startswith(b"<"):
        return "text/html"
    if start.startswith((b"{", b"[")):
        return "application/json"
    return "application/octet-stream"


def check_readable(url: str, content_type: str | None) -> str | None:
    """Raise when the declared type is unreadable; return it, or ``None`` when missing.

    Raises:
        NotHtmlError: The declared media type is not one scrapers can read.
    """
    media = media_type(content_type)
    if not media:
        return None
    if not is_readable(media):
        raise NotHtmlError(url, content_type=media)
    return media


def resolve_media_type(url: str, content_type: str | None, body: bytes) -> str:
    """The media type of a response: the declared one, else sniffed from the body.

    Raises:
        NotHtmlError: The (declared or sniffed) type is not one scrapers can read.
    """
    declared = check_readable(url, content_type)
    if declared is not None:
        return declared
    sniffed = sniff_media_type(body)
    if not is_readable(sniffed):
        raise NotHtmlError(url, content_type="(none declared; body is not HTML or JSON)")
    return sniffed
