"""A small JSON path dialect and the readers of JSON embedded in HTML scripts.

Part of the standalone runtime (standard library only). Supported path syntax::

    $                 the node itself
    .name  ["name"]   a key (a key applied to a list applies to each element)
    [0]  [-1]         an index
    [*]  .*           every element / value
    ..name            ``name`` at any depth below
    [?key=value]      keep the objects whose ``key`` equals (or, for a list, holds) value

Examples: ``$.props.pageProps.products``, ``offers.price``, ``$..[?@type=Product]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_TOKEN_RE = re.compile(
    r"""\.\.(?P<deep>[^.\[\]]+)
      | \.\.(?=\[)
      | \.?(?P<name>[^.\[\]]+)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\]
      | \[\s*\*\s*\]
      | \[\s*\?\s*(?P<fkey>[^=\]]+?)\s*=\s*(?P<fvalue>"[^"]*"|'[^']*'|[^\]]*?)\s*\]
    """,
    re.X,
)
MAX_NODES = 200_000
"""Nodes visited at most by one ``..`` step, so a huge document cannot stall extraction."""

Step = tuple[str, Any]


class JsonPathError(ValueError):
    """A JSON path could not be parsed."""


def compile_path(path: str) -> list[Step]:
    """Parse ``path`` into steps.

    Raises:
        JsonPathError: The path has text the dialect does not understand.
    """
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[Step] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None or match.end() == position:
            raise JsonPathError(
                f"cannot read JSON path {path!r} at {text[position:]!r}; use $.key, [0], [*], "
                f"..key or [?key=value]"
            )
        token = match.group(0)
        if match.group("deep") is not None:
            steps.append(("deep", match.group("deep")))
        elif token == "..":
            steps.append(("deep", None))
        elif match.group("name") is not None:
            name = match.group("name").strip()
            steps.append(("all", None) if name == "*" else ("key", name))
        elif match.group("index") is not None:
            steps.append(("index", int(match.group("index"))))
        elif match.group("quoted") is not None:
            steps.append(("key", json.loads(_double_quoted(match.group("quoted")))))
        elif match.group("fkey") is not None:
            value = match.group("fvalue").strip()
            if value[:1] in "\"'" and len(value) >= 2:
                value = value[1:-1]
            steps.append(("filter", (match.group("fkey").strip().removeprefix("@."), value)))
        else:
            steps.append(("all", None))
        position = match.end()
    return steps


def _double_quoted(quoted: str) -> str:
    if quoted.startswith("'"):
        return '"' + quoted[1:-1].replace('"', '\\"').replace("\\'", "'") + '"'
    return quoted


def evaluate(steps: list[Step], node: Any) -> list[Any]:
    """Return every value ``steps`` reach from ``node``, in document order."""
    current = [node]
    for kind, argument in steps:
        found: list[Any] = []
        for item in current:
            found.extend(_step(kind, argument, item))
        current = found
    return current


def _step(kind: str, argument: Any, node: Any) -> Iterator[Any]:
    if kind == "key":
        if isinstance(node, dict):
            if argument in node:
                yield node[argument]
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, dict) and argument in item:
                    yield item[argument]
    elif kind == "index":
        if isinstance(node, list) and -len(node) <= argument < len(node):
            yield node[argument]
    elif kind == "all":
        if isinstance(node, dict):
            yield from node.values()
        elif isinstance(node, list):
            yield from node
    elif kind == "filter":
        key, expected = argument
        candidates = node if isinstance(node, list) else [node]
        for item in candidates:
            if isinstance(item, dict) and _matches(item.get(key), expected):
                yield item
    elif kind == "deep":
        yield from _descendants(node, argument)


def _matches(value: Any, expected: str) -> bool:
    if isinstance(value, list):
        return any(scalar_text(item) == expected for item in value)
    return scalar_text(value) == expected


def _descendants(node: Any, key: str | None) -> Iterator[Any]:
    # Iterative walk: embedded JSON can be nested deeper than Python's recursion limit.
    stack = [node]
    visited = 0
    while stack and visited < MAX_NODES:
        item = stack.pop()
        visited += 1
        if key is None:
            yield item
        children: list[Any] = []
        if isinstance(item, dict):
            if key is not None and key in item:
                yield item[key]
            children = list(item.values())
        elif isinstance(item, list):
            children = list(item)
        stack.extend(reversed(children))


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as the runtime prints it (``89.0`` → ``89``); ``None`` for objects."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def scalar_values(found: list[Any]) -> list[str]:
    """Flatten lists among ``found`` and return their scalars as text (objects are skipped)."""
    values: list[str] = []
    for item in found:
        for scalar in item if isinstance(item, list) else [item]:
            text = scalar_text(scalar)
            if text is not None:
                values.append(text)
    return values


def records_at(found: list[Any]) -> list[Any]:
    """Turn what a container path reached into records: a list contributes its elements."""
    records: list[Any] = []
    for item in found:
        if isinstance(item, list):
            records.extend(item)
        elif item is not None:
            records.append(item)
    return records


def _clean_script(text: str) -> str:
    text = text.strip()
    for wrapper in ("<!--", "//<![CDATA[", "<![CDATA["):
        text = text.removeprefix(wrapper).lstrip()
    for wrapper in ("-->", "//]]>", "]]>"):
        text = text.removesuffix(wrapper).rstrip()
    return text


def parse_script_json(text: str, variable: str | None) -> Any:
    """Read the JSON of a script: the whole text, or the literal assigned to ``variable``.

    Returns:
        The parsed value, or ``None`` when the script holds no readable JSON (for instance
        a JavaScript object literal with unquoted keys, which is not JSON).
    """
    text = _clean_script(text)
    if variable is None:
        try:
            return json.loads(text, strict=False)
        except ValueError:
            return None
    pattern = re.compile(r"(?<![\w$])" + re.escape(variable) + r"\s*=\s*")
    decoder = json.JSONDecoder(strict=False)
    for match in pattern.finditer(text):
        start = match.end()
        if text.startswith("JSON.parse(", start):
            return _json_parse_call(text, start + len("JSON.parse("), decoder)
        try:
            return decoder.raw_decode(text, start)[0]
        except ValueError:
            continue
    return None


def _json_parse_call(text: str, start: int, decoder: json.JSONDecoder) -> Any:
    # `x = JSON.parse("{\"a\":1}")`: a JSON string literal whose content is JSON again.
    try:
        inner = decoder.raw_decode(text, start)[0]
        return json.loads(inner, strict=False) if isinstance(inner, str) else None
    except ValueError:
        return None
