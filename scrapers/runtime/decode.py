"""Decode fetched bytes into text the way a browser would.

Part of the standalone runtime (standard library only). selectolax can sniff encodings
itself, but it cannot be told the HTTP ``charset`` parameter and never falls back to
windows-1252, so the few rules of the HTML standard that matter are written out here:
byte-order mark, then the HTTP charset, then a ``<meta>`` declaration, then UTF-8 if the
bytes are valid UTF-8, else windows-1252.
"""

from __future__ import annotations

import codecs
import re

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_HEADER_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
SNIFF_BYTES = 4096
"""How far into the document a ``<meta charset>`` is looked for (browsers look at 1024)."""


def charset_from_content_type(content_type: str | None) -> str | None:
    """Return the ``charset`` parameter of an HTTP ``Content-Type`` header, if any."""
    if not content_type:
        return None
    match = _HEADER_CHARSET_RE.search(content_type)
    return match.group(1) if match else None


def _known(label: str | None) -> str | None:
    if not label:
        return None
    try:
        info = codecs.lookup(label.strip().lower())
    except LookupError:
        return None
    # The standard maps latin-1 and ascii labels to windows-1252, a superset.
    if info.name in ("latin-1", "iso8859-1", "ascii"):
        return "cp1252"
    return info.name


def decode_body(data: bytes | str, http_charset: str | None = None) -> str:
    """Decode a response body; ``str`` input is returned with a leading BOM removed.

    Args:
        data: The raw bytes (or already decoded text).
        http_charset: The ``charset`` parameter of the HTTP ``Content-Type``, or the whole
            header value.

    Returns:
        The text, without byte-order mark.
    """
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    declared = _known(charset_from_content_type(http_charset) or http_charset)
    if declared is None:
        match = _META_CHARSET_RE.search(data[:SNIFF_BYTES])
        declared = _known(match.group(1).decode("ascii")) if match else None
        if declared and declared.startswith("utf-16"):
            declared = "utf-8"  # a meta tag readable as ASCII cannot be UTF-16
    if declared:
        return data.decode(declared, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")
