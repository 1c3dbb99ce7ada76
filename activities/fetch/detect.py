"""Does a page build its content with JavaScript? A documented heuristic.

A static fetch of a single-page app returns a shell: an empty mount point and scripts.
Scouting that shell finds nothing, so the caller renders the page in a browser first.
:func:`looks_script_built` answers from the HTML alone, cheaply:

1. No ``<script>`` at all → **no** (nothing could build content), and ≥ 1000 characters
   of visible body text → **no** (the content is already there).
2. An empty container scripts evidently fill → **yes**: a framework mount point
   (``#root``, ``#app``, ``#__next``, ``#__nuxt``, ``#___gatsby``, ``#svelte``,
   ``<app-root>``, ``[data-reactroot]``, ``[ng-app]``) with under 20 characters of text
   (a spinner's "Loading…"), or an element without any text that inline code looks up
   by id (``getElementById("list")``, ``querySelector("#list")``).
3. Under 200 characters of visible text and three ``<script>`` elements or more, or a
   ``<noscript>`` that mentions JavaScript → **yes**.
4. Under 50 characters of visible text (an essentially empty body) and inline JSON state
   (``__NEXT_DATA__``, ``window.__DATA__ = …``, ``application/json`` scripts), inline
   code that writes the DOM (``innerHTML =``, ``appendChild(`` …) or an external
   script → **yes**.
5. Otherwise → **no**.

Rendering fills the containers of rule 2 and the body of rule 4, so a rendered page
answers **no** (unless rendering did not produce content either).

"Visible text" is the body's text without ``script``, ``style``, ``noscript``,
``template`` and ``svg`` contents, whitespace collapsed.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from activities.fetch.page import HTML_TYPES, FetchedPage

LITTLE_TEXT = 200
"""Visible characters under which a page with many scripts counts as a shell."""
TINY_TEXT = 50
"""Visible characters under which a body counts as empty."""
MUCH_TEXT = 1000
"""Visible characters from which a page counts as having its content, scripts or not."""
EMPTY_MOUNT_TEXT = 20
"""A mount point with fewer characters than this ("Loading…") counts as empty."""

_MOUNT_SELECTORS = (
    "#root, #app, #__next, #__nuxt, #___gatsby, #svelte, app-root, [data-reactroot], [ng-app]"
)
_INVISIBLE = ("script", "style", "noscript", "template", "svg")
_STATE_RE = re.compile(
    r"window\.__[A-Za-z0-9_]+__\s*=|__(?:INITIAL|PRELOADED|APOLLO)_STATE__|__NUXT__\s*="
)
_DOM_CODE_RE = re.compile(
    r"\.innerHTML\s*[+]?=|\.textContent\s*=|\.appendChild\(|\.append\(|insertAdjacentHTML|"
    r"document\.write\(|createElement\(|createRoot\(|ReactDOM|hydrate\(|new Vue\(|createApp\("
)
_TARGET_RE = re.compile(
    r"""(?:getElementById\(\s*['"]|querySelector(?:All)?\(\s*['"]#|\$\(\s*['"]#)([A-Za-z][\w-]*)"""
)
_DATA_SCRIPT_TYPES = ("application/json",)
_WHITESPACE_RE = re.compile(r"\s+")


def looks_script_built(page: FetchedPage) -> bool:
    """Whether ``page`` looks like a shell whose content JavaScript builds.

    See the module docstring for the rules. Only HTML pages can be script-built; any
    other content type answers ``False``.

    Args:
        page: A fetched page (static or rendered).

    Returns:
        True when rendering the page in a browser is likely to reveal content the static
        body lacks.
    """
    if page.content_type not in HTML_TYPES:
        return False
    tree = LexborHTMLParser(page.text())
    scripts = tree.css("script")
    if not scripts:
        return False
    external = sum(1 for s in scripts if s.attributes.get("src"))
    inline_code = [s.text(deep=True) or "" for s in scripts if not s.attributes.get("src")]
    inline_data = any(
        (s.attributes.get("type") or "").strip().lower() in _DATA_SCRIPT_TYPES
        or (s.attributes.get("id") or "") in ("__NEXT_DATA__", "__NUXT_DATA__")
        for s in scripts
    ) or any(_STATE_RE.search(code) for code in inline_code)
    dom_code = any(_DOM_CODE_RE.search(code) for code in inline_code)
    noscript_js = any(
        "javascript" in (n.text(deep=True) or "").lower() for n in tree.css("noscript")
    )

    targets = {match for code in inline_code for match in _TARGET_RE.findall(code)}

    tree.strip_tags(list(_INVISIBLE))
    body = tree.body
    text = _visible(body.text(deep=True, separator=" ") if body is not None else "")
    if len(text) >= MUCH_TEXT:
        return False
    if any(_text_length(node) < EMPTY_MOUNT_TEXT for node in tree.css(_MOUNT_SELECTORS)):
        return True
    for target in sorted(targets):
        node = tree.css_first(f"#{target}")
        if node is not None and _text_length(node) == 0:
            return True
    if len(text) < LITTLE_TEXT and (noscript_js or len(scripts) >= 3):
        return True
    return len(text) < TINY_TEXT and (inline_data or dom_code or external > 0)


def _text_length(node: LexborNode) -> int:
    return len(_visible(node.text(deep=True, separator=" ")))


def _visible(text: str | None) -> str:
    return _WHITESPACE_RE.sub(" ", text or "").strip()
