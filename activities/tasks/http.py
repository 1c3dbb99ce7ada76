"""The ``http`` task: one HTTP request through the worker's shared httpx client.

Errors (beyond those in :mod:`activities.tasks.base`):
    HttpStatusError          error status (>= 400, or outside ``ok_statuses``); 4xx other than
                             408/425/429 are not retried
    HttpTransportError       connection refused, DNS, timeout, broken connection (retried)
    HttpDecodeError          ``expect: json`` but the body is not JSON (never retried)
    ResponseTooLargeError    the body exceeded ``max_bytes`` (a TaskConfigError: never retried)
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from activities.fetch.static import read_start
from activities.tasks.base import (
    HandlerOutput,
    HttpStatusError,
    TaskConfigError,
    TaskContext,
    TaskError,
    TaskHandler,
)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
ERROR_BODY_CHARS = 500
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
EXPECT = ("auto", "json", "text")
SELECTED_HEADERS = ("content-type", "etag", "last-modified")
_HEARTBEAT_BYTES = 1024 * 1024


class HttpTransportError(TaskError):
    """The request did not get a response (refused, DNS, timeout, reset); retried."""

    type_name = "HttpTransportError"


class HttpDecodeError(TaskError):
    """The response body is not the JSON that ``expect: json`` asked for."""

    type_name = "HttpDecodeError"
    non_retryable = True


class ResponseTooLargeError(TaskConfigError):
    """The response body is larger than ``max_bytes``."""


@dataclass(frozen=True)
class HttpRequest:
    """The checked params of one ``http`` task."""

    url: str
    method: str
    headers: dict[str, str]
    query: dict[str, Any]
    json_body: Any
    data: Any
    timeout: float
    expect: str
    max_bytes: int
    ok_statuses: frozenset[int] | None


def _number(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TaskConfigError(f"http task param {name!r} must be a number, got {value!r:.80}")
    if value <= 0:
        raise TaskConfigError(f"http task param {name!r} must be greater than 0, got {value!r}")
    return float(value)


def parse_request(params: Mapping[str, Any]) -> HttpRequest:
    """Check an ``http`` task's params.

    Raises:
        TaskConfigError: Naming the param that is wrong and what it should be.
    """
    url = params.get("url")
    if not isinstance(url, str) or not url:
        raise TaskConfigError(f"http task needs param 'url' as a string, got {url!r:.80}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise TaskConfigError(
            f"http task param 'url' is not a valid URL ({exc}): {url!r}"
        ) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TaskConfigError(
            f"http task param 'url' must be an absolute http:// or https:// URL, got {url!r}"
        )
    method = params.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise TaskConfigError(
            f"http task param 'method' must be one of {', '.join(METHODS)}, got {method!r:.40}"
        )
    headers = params.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise TaskConfigError("http task param 'headers' must map header names to strings")
    query = params.get("query") or {}
    if not isinstance(query, Mapping):
        raise TaskConfigError(
            f"http task param 'query' must be a mapping of name to value, got {query!r:.80}"
        )
    if params.get("json") is not None and params.get("data") is not None:
        raise TaskConfigError("http task takes either param 'json' or param 'data', not both")
    data = params.get("data")
    if data is not None and not isinstance(data, str | Mapping):
        raise TaskConfigError(
            "http task param 'data' must be a string (sent as is) or a mapping (sent as a form)"
        )
    expect = params.get("expect", "auto")
    if expect not in EXPECT:
        raise TaskConfigError(
            f"http task param 'expect' must be one of {', '.join(EXPECT)}, got {expect!r:.40}"
        )
    max_bytes = params.get("max_bytes", DEFAULT_MAX_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise TaskConfigError(
            f"http task param 'max_bytes' must be a positive integer, got {max_bytes!r:.40}"
        )
    ok_statuses = params.get("ok_statuses")
    if ok_statuses is not None and (
        not isinstance(ok_statuses, list)
        or not ok_statuses
        or not all(isinstance(s, int) and 100 <= s <= 599 for s in ok_statuses)
    ):
        raise TaskConfigError(
            "http task param 'ok_statuses' must be a non-empty list of status codes, "
            f"got {ok_statuses!r:.80}"
        )
    return HttpRequest(
        url=url,
        method=method.upper(),
        headers=dict(headers),
        query=dict(query),
        json_body=params.get("json"),
        data=data,
        timeout=_number(params, "timeout", DEFAULT_TIMEOUT),
        expect=expect,
        max_bytes=max_bytes,
        ok_statuses=frozenset(ok_statuses) if ok_statuses is not None else None,
    )


def count_records(value: Any) -> int | None:
    """Records in a JSON body: a list's length, or that of the only list in a dict."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return len(lists[0])
    return None


def _status_ok(request: HttpRequest, status: int) -> bool:
    if request.ok_statuses is not None:
        return status in request.ok_statuses
    return status < 400


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class HttpHandler(TaskHandler):
    """Make one HTTP request and return its status, selected headers and parsed body.

    Params:
        url (string, required): Absolute ``http://`` or ``https://`` URL.
        method (string): ``GET`` (default), ``POST``, ``PUT``, ``PATCH``, ``DELETE``,
            ``HEAD`` or ``OPTIONS``.
        headers (mapping): Request headers.
        query (mapping): Query-string parameters, added to any already in ``url`` (a list
            value repeats the parameter).
        json (any): Body sent as JSON.
        data (string or mapping): Body sent as is (string) or as a form (mapping); not
            together with ``json``.
        timeout (number): Seconds the whole request, body included, may take. Default 30.
        expect (string): ``auto`` (default) parses the body as JSON when the
            ``Content-Type`` is JSON and returns text otherwise; ``json`` always parses
            (a body that is not JSON fails the task, not retried); ``text`` never parses.
        max_bytes (int): Largest body accepted, after decompression. Default 10 MB; a
            larger body fails the task (not retried) without being read to the end.
        ok_statuses (list of int): Statuses that count as success. By default every status
            below 400 does (redirects are followed).

    Output:
        ``{"url": final URL after redirects, "status": int, "headers": {"content-type",
        "etag", "last-modified"} (null when absent), "json": parsed body or null,
        "text": body text or null, "elapsed_ms": float}``. Exactly one of ``json`` and
        ``text`` is set (neither for an empty body or ``HEAD``).

        ``records_out`` is the length of the JSON body when it is a list, or of the only
        list value of a JSON object (``{"orders": [...]}``); otherwise unset.

    Errors:
        ``HttpStatusError`` for an error status, carrying ``status``, ``url`` and the first
        500 characters of the body; a 4xx other than 408, 425 and 429 is not retried.
        ``HttpTransportError`` (retried) when no response arrived: connection refused, DNS
        failure, timeout or a broken connection.
    """

    type_name = "http"
    description = "Make an HTTP request; output status, headers and JSON or text body"

    def check_params(self, params: Mapping[str, Any]) -> None:
        parse_request(params)

    async def run(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        request = parse_request(params)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(request.timeout):
                response, body = await self._fetch(request, ctx)
        except TimeoutError:
            raise HttpTransportError(
                f"{request.method} {request.url} did not finish within {request.timeout:g}s "
                "(param 'timeout'); it will be retried",
                url=request.url,
            ) from None
        except httpx.TimeoutException as exc:
            raise HttpTransportError(
                f"{request.method} {request.url} timed out ({type(exc).__name__}) within "
                f"{request.timeout:g}s; it will be retried",
                url=request.url,
            ) from None
        except (httpx.TransportError, httpx.TooManyRedirects) as exc:
            raise HttpTransportError(
                f"{request.method} {request.url} failed: {str(exc) or 'no response'} "
                f"({type(exc).__name__}); it will be retried",
                url=request.url,
            ) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        final_url = str(response.url)
        encoding = response.encoding or "utf-8"
        self._check_status(request, response, final_url, body, encoding)

        content_type = response.headers.get("content-type", "")
        parse_json = request.expect == "json" or (
            request.expect == "auto" and _is_json_type(content_type)
        )
        parsed: Any = None
        text: str | None = None
        if body and parse_json:
            parsed = self._decode_json(body, final_url, encoding)
        elif body:
            text = body.decode(encoding, errors="replace")
        output = {
            "url": final_url,
            "status": response.status_code,
            "headers": {name: response.headers.get(name) for name in SELECTED_HEADERS},
            "json": parsed,
            "text": text,
            "elapsed_ms": round(elapsed_ms, 3),
        }
        return HandlerOutput(output, records_out=count_records(parsed))

    async def _fetch(self, request: HttpRequest, ctx: TaskContext) -> tuple[httpx.Response, bytes]:
        body_args: dict[str, Any] = {}
        if request.json_body is not None:
            body_args["json"] = request.json_body
        elif isinstance(request.data, str):
            body_args["content"] = request.data
        elif request.data is not None:
            body_args["data"] = dict(request.data)
        # httpx's params= would replace a query string already in the URL; merge instead.
        url = (
            httpx.URL(request.url).copy_merge_params(request.query)
            if request.query
            else request.url
        )
        async with ctx.http.stream(
            request.method,
            url,
            headers=request.headers,
            timeout=httpx.Timeout(request.timeout),
            follow_redirects=True,
            **body_args,
        ) as response:
            if not _status_ok(request, response.status_code):
                # Only the start of an error body is reported; a huge error page must still
                # surface as its status (maybe retryable), not as a too-large body.
                return response, await read_start(response, ERROR_BODY_CHARS * 4)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > request.max_bytes:
                raise self._too_large(request, f"declares {int(declared):,} bytes")
            chunks: list[bytes] = []
            size = 0
            next_beat = _HEARTBEAT_BYTES
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > request.max_bytes:
                    raise self._too_large(request, f"passed {size:,} bytes before being cut off")
                chunks.append(chunk)
                if size >= next_beat:
                    ctx.heartbeat({"bytes": size})
                    next_beat += _HEARTBEAT_BYTES
            return response, b"".join(chunks)

    @staticmethod
    def _too_large(request: HttpRequest, what: str) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"{request.method} {request.url}: the response body {what}, over the limit of "
            f"{request.max_bytes:,} bytes (param 'max_bytes'); raise max_bytes or request less",
            url=request.url,
            max_bytes=request.max_bytes,
        )

    @staticmethod
    def _check_status(
        request: HttpRequest, response: httpx.Response, url: str, body: bytes, encoding: str
    ) -> None:
        status = response.status_code
        if _status_ok(request, status):
            return
        snippet = body.decode(encoding, errors="replace")[:ERROR_BODY_CHARS]
        message = f"{request.method} {url} returned HTTP {status} {response.reason_phrase}"
        error = HttpStatusError(f"{message}: {snippet!r}", status=status, url=url, body=snippet)
        if not error.retryable:
            error = HttpStatusError(
                f"{message} (not retried: this status will not change by retrying): {snippet!r}",
                status=status,
                url=url,
                body=snippet,
            )
        raise error

    @staticmethod
    def _decode_json(body: bytes, url: str, encoding: str) -> Any:
        try:
            return json.loads(body.decode(encoding, errors="strict"))
        except UnicodeDecodeError as exc:
            raise HttpDecodeError(
                f"response of {url} is not valid {encoding} text at byte {exc.start}", url=url
            ) from None
        except json.JSONDecodeError as exc:
            around = exc.doc[max(0, exc.pos - 20) : exc.pos + 20]
            raise HttpDecodeError(
                f"response of {url} is not valid JSON: {exc.msg} at line {exc.lineno} column "
                f"{exc.colno} (char {exc.pos}), near {around!r}; use expect: text to keep it "
                "as text",
                url=url,
                position=exc.pos,
            ) from None
