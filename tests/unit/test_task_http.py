"""The http handler against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from activities.tasks import (
    HandlerOutput,
    HttpDecodeError,
    HttpHandler,
    HttpStatusError,
    HttpTransportError,
    ResponseTooLargeError,
    TaskConfigError,
    TaskContext,
)

Ctx = Callable[..., TaskContext]


async def fetch(ctx: TaskContext, **params: Any) -> HandlerOutput:
    handler = HttpHandler()
    handler.check_params(params)
    result = await handler.run(params, ctx)
    assert isinstance(result, HandlerOutput)
    return result


async def test_json_body_is_parsed_with_selected_headers(
    task_http_server: str, task_ctx: Ctx
) -> None:
    result = await fetch(task_ctx(), url=f"{task_http_server}/orders")
    out = result.value
    assert out["status"] == 200
    assert out["url"] == f"{task_http_server}/orders"
    assert out["json"]["orders"][0] == {"id": 1, "amount": 10.5}
    assert out["text"] is None
    assert out["headers"] == {
        "content-type": "application/json",
        "etag": '"v1"',
        "last-modified": "Fri, 20 Nov 2026 08:00:00 GMT",
    }
    assert out["elapsed_ms"] > 0
    # The only list in the object is what downstream tasks count as records.
    assert result.records_out == 3


async def test_top_level_list_counts_records(task_http_server: str, task_ctx: Ctx) -> None:
    result = await fetch(task_ctx(), url=f"{task_http_server}/list")
    assert result.value["json"] == [1, 2, 3, 4]
    assert result.records_out == 4


async def test_text_body_is_decoded_with_its_charset(task_http_server: str, task_ctx: Ctx) -> None:
    result = await fetch(task_ctx(), url=f"{task_http_server}/text")
    assert result.value["text"] == "héllo wörld"
    assert result.value["json"] is None
    assert result.records_out is None


async def test_expect_controls_parsing(task_http_server: str, task_ctx: Ctx) -> None:
    as_json = await fetch(task_ctx(), url=f"{task_http_server}/json-as-text", expect="json")
    assert as_json.value["json"] == {"a": 1}
    as_text = await fetch(task_ctx(), url=f"{task_http_server}/orders", expect="text")
    assert as_text.value["json"] is None
    assert as_text.value["text"].startswith('{"orders"')


async def test_query_headers_and_redirects(task_http_server: str, task_ctx: Ctx) -> None:
    echo = await fetch(
        task_ctx(),
        url=f"{task_http_server}/echo",
        query={"day": "2026-11-20", "tag": ["a", "b"]},
        headers={"X-Token": "secret"},
    )
    assert echo.value["json"]["query"] == {"day": ["2026-11-20"], "tag": ["a", "b"]}
    assert echo.value["json"]["headers"]["X-Token"] == "secret"
    redirected = await fetch(task_ctx(), url=f"{task_http_server}/redirect")
    assert redirected.value["url"] == f"{task_http_server}/orders"
    assert redirected.value["status"] == 200


async def test_post_json_and_form(task_http_server: str, task_ctx: Ctx) -> None:
    sent = await fetch(task_ctx(), url=f"{task_http_server}/in", method="post", json={"a": [1]})
    assert sent.value["status"] == 201
    assert sent.value["json"]["content_type"] == "application/json"
    assert sent.value["json"]["body"] == '{"a":[1]}'
    form = await fetch(task_ctx(), url=f"{task_http_server}/in", method="PUT", data={"x": "1"})
    assert form.value["json"]["body"] == "x=1"
    raw = await fetch(task_ctx(), url=f"{task_http_server}/in", method="POST", data="plain body")
    assert raw.value["json"]["body"] == "plain body"


async def test_empty_body_and_head(task_http_server: str, task_ctx: Ctx) -> None:
    empty = await fetch(task_ctx(), url=f"{task_http_server}/empty")
    assert (empty.value["status"], empty.value["json"], empty.value["text"]) == (204, None, None)
    head = await fetch(task_ctx(), url=f"{task_http_server}/orders", method="HEAD")
    assert head.value["status"] == 200
    assert head.value["json"] is None


async def test_404_is_not_retried_and_names_status_url_and_body(
    task_http_server: str, task_ctx: Ctx
) -> None:
    with pytest.raises(HttpStatusError) as caught:
        await fetch(task_ctx(), url=f"{task_http_server}/missing")
    error = caught.value
    assert error.status == 404
    assert error.non_retryable is True
    assert error.details["url"] == f"{task_http_server}/missing"
    assert error.details["body"].startswith("no such order")
    assert len(error.details["body"]) == 500
    assert "404" in str(error) and "/missing" in str(error)


@pytest.mark.parametrize(("path", "status"), [("/boom", 500), ("/busy", 429)])
async def test_server_errors_and_429_are_retried(
    task_http_server: str, task_ctx: Ctx, path: str, status: int
) -> None:
    with pytest.raises(HttpStatusError) as caught:
        await fetch(task_ctx(), url=f"{task_http_server}{path}")
    assert caught.value.status == status
    assert caught.value.non_retryable is False


async def test_large_error_body_still_reports_the_status(
    task_http_server: str, task_ctx: Ctx
) -> None:
    with pytest.raises(HttpStatusError) as caught:
        await fetch(task_ctx(), url=f"{task_http_server}/huge-error", max_bytes=1000)
    assert caught.value.status == 503
    assert caught.value.non_retryable is False
    assert caught.value.details["body"].startswith("maintenance maintenance")


async def test_ok_statuses_accepts_listed_error_status(
    task_http_server: str, task_ctx: Ctx
) -> None:
    result = await fetch(task_ctx(), url=f"{task_http_server}/missing", ok_statuses=[200, 404])
    assert result.value["status"] == 404
    with pytest.raises(HttpStatusError) as caught:
        await fetch(task_ctx(), url=f"{task_http_server}/orders", ok_statuses=[201])
    assert caught.value.status == 200


async def test_body_over_declared_size_is_refused(task_http_server: str, task_ctx: Ctx) -> None:
    with pytest.raises(ResponseTooLargeError, match=r"declares 5,000 bytes.*limit of 1,000 bytes"):
        await fetch(task_ctx(), url=f"{task_http_server}/big?n=5000", max_bytes=1000)
    ok = await fetch(task_ctx(), url=f"{task_http_server}/big?n=1000", max_bytes=1000)
    assert len(ok.value["text"]) == 1000


async def test_unsized_body_is_cut_off_at_the_cap(task_http_server: str, task_ctx: Ctx) -> None:
    with pytest.raises(ResponseTooLargeError) as caught:
        await fetch(task_ctx(), url=f"{task_http_server}/big-unsized?n=50000000", max_bytes=100_000)
    assert caught.value.non_retryable is True
    assert caught.value.type_name == "TaskConfigError"
    assert "max_bytes" in str(caught.value)


async def test_invalid_json_is_not_retried_and_gives_position(
    task_http_server: str, task_ctx: Ctx
) -> None:
    with pytest.raises(HttpDecodeError) as caught:
        await fetch(task_ctx(), url=f"{task_http_server}/bad-json")
    assert caught.value.non_retryable is True
    assert "line 1 column 18" in str(caught.value)
    assert caught.value.details["position"] == 17


async def test_connection_refused_is_a_retryable_transport_error(task_ctx: Ctx) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HttpTransportError) as caught:
        await fetch(task_ctx(), url=f"http://127.0.0.1:{port}/orders")
    assert caught.value.non_retryable is False
    assert caught.value.type_name == "HttpTransportError"
    assert f"127.0.0.1:{port}" in str(caught.value)


async def test_timeout_is_a_retryable_transport_error(task_http_server: str, task_ctx: Ctx) -> None:
    with pytest.raises(HttpTransportError, match=r"within 0\.3s"):
        await fetch(task_ctx(), url=f"{task_http_server}/slow?s=2", timeout=0.3)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "/relative"}, "url"),
        ({"url": "http://x", "method": "FETCH"}, "method"),
        ({"url": "http://x", "expect": "xml"}, "expect"),
        ({"url": "http://x", "max_bytes": 0}, "max_bytes"),
        ({"url": "http://x", "timeout": -1}, "timeout"),
        ({"url": "http://x", "json": {}, "data": "a"}, "json"),
        ({"url": "http://x", "headers": {"a": 1}}, "headers"),
        ({"url": "http://x", "ok_statuses": [99]}, "ok_statuses"),
    ],
)
def test_bad_params_name_the_param(params: dict[str, Any], param: str) -> None:
    with pytest.raises(TaskConfigError, match=param):
        HttpHandler().check_params(params)
