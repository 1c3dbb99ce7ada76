"""The fetch layer against real HTTP servers on 127.0.0.x: guard, robots, limits, errors."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from activities.fetch import (
    BodyTooLargeError,
    ConnectError,
    DnsError,
    FetchedPage,
    Fetcher,
    FetchTimeoutError,
    HttpStatusFetchError,
    InvalidUrlError,
    NotHtmlError,
    RobotsDisallowedError,
    TooManyRedirectsError,
    UrlNotAllowedError,
    looks_script_built,
)
from models.settings import Settings
from tests.fixtures.fetch.server import FIXTURES, Reply, SiteServer
from tests.support.procs import free_port

ROBOTS = """\
User-agent: *
Disallow: /admin

User-agent: MendlineBot
Disallow: /private
"""


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allow_private_networks": True,
        "host_rate_limit": 1000.0,
        "fetch_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def site() -> Iterator[SiteServer]:
    with SiteServer() as server:
        yield server


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(make_settings()) as fetcher:
        yield fetcher


# --- successful fetches ---------------------------------------------------------------------


async def test_fetch_returns_page_with_headers_type_and_text(
    site: SiteServer, fetcher: Fetcher
) -> None:
    site.routes["/"] = Reply(body="<html><body><h1>Plants</h1></body></html>")

    page = await fetcher.fetch(site.url("/"))

    assert page.status == 200
    assert page.url == page.final_url == site.url("/")
    assert page.content_type == "text/html"
    assert page.charset == "utf-8"
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Plants</h1>" in page.text()
    assert page.rendered is False
    assert page.elapsed_ms > 0
    assert site.seen[-1].headers["User-Agent"] == make_settings().user_agent


async def test_redirects_are_followed_to_the_final_url(site: SiteServer, fetcher: Fetcher) -> None:
    site.routes["/old"] = Reply(301, headers={"Location": "/middle"})
    site.routes["/middle"] = Reply(302, headers={"Location": site.url("/new#top")})
    site.routes["/new"] = Reply(body="<p>moved here</p>")

    page = await fetcher.fetch(site.url("/old"))

    assert page.url == site.url("/old")
    assert page.final_url == site.url("/new")
    assert "moved here" in page.text()


async def test_redirect_loop_fails_without_retry(site: SiteServer, fetcher: Fetcher) -> None:
    site.routes["/a"] = Reply(302, headers={"Location": "/b"})
    site.routes["/b"] = Reply(302, headers={"Location": "/a"})

    with pytest.raises(TooManyRedirectsError) as caught:
        await fetcher.fetch(site.url("/a"))

    assert not caught.value.retryable
    assert site.paths().count("/a") == 3  # 6 requests: the first and five redirect hops


async def test_windows_1252_page_decodes(site: SiteServer, fetcher: Fetcher) -> None:
    body = (FIXTURES / "cp1252.html").read_bytes()
    site.routes["/declared"] = Reply(body=body, content_type="text/html; charset=windows-1252")
    site.routes["/undeclared"] = Reply(body=body, content_type="text/html")

    declared = await fetcher.fetch(site.url("/declared"))
    undeclared = await fetcher.fetch(site.url("/undeclared"))

    assert declared.charset == "windows-1252"
    for page in (declared, undeclared):
        assert "Café crème – “Grüße”" in page.text()
        assert "€5" in page.text()


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"  <!doctype html><p>hi</p>", "text/html"), (b'[{"id": 1}]', "application/json")],
)
async def test_missing_content_type_is_sniffed(
    site: SiteServer, fetcher: Fetcher, body: bytes, expected: str
) -> None:
    site.routes["/x"] = Reply(body=body, content_type=None)

    page = await fetcher.fetch(site.url("/x"))

    assert page.content_type == expected


# --- the SSRF guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address", "kind"),
    [
        ("http://127.0.0.1:{port}/", "127.0.0.1", "loopback"),
        ("http://10.0.0.1/", "10.0.0.1", "private"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
        ("http://[::1]:{port}/", "::1", "loopback"),
        ("http://localhost:{port}/", "127.0.0.1", "loopback"),
        ("http://[::ffff:10.1.2.3]/", "::ffff:10.1.2.3", "private"),
        ("http://0.0.0.0:{port}/", "0.0.0.0", "unspecified"),
        ("http://2130706433:{port}/", "127.0.0.1", "loopback"),  # 127.0.0.1 as one number
    ],
)
async def test_guard_refuses_non_public_addresses(
    site: SiteServer, url: str, address: str, kind: str
) -> None:
    async with Fetcher(make_settings(allow_private_networks=False)) as fetcher:
        with pytest.raises(UrlNotAllowedError) as caught:
            await fetcher.fetch(url.format(port=site.port), respect_robots=False)

    error = caught.value
    assert not error.retryable
    assert error.error_class == "ssrf"
    assert ipaddress.ip_address(error.address) == ipaddress.ip_address(address)
    assert kind in error.reason
    assert error.address in str(error)
    assert "MENDLINE_ALLOW_PRIVATE_NETWORKS=1" in str(error)
    assert "MENDLINE_ALLOWED_HOSTS" in str(error)
    assert site.seen == []


async def test_guard_checks_every_redirect_hop(site: SiteServer) -> None:
    with SiteServer("127.0.0.2") as internal:
        internal.routes["/"] = Reply(body="<p>internal admin</p>")
        site.routes["/go"] = Reply(302, headers={"Location": internal.url("/")})
        settings = make_settings(allow_private_networks=False, allowed_hosts="127.0.0.1")

        async with Fetcher(settings) as fetcher:
            with pytest.raises(UrlNotAllowedError) as caught:
                await fetcher.fetch(site.url("/go"))

        assert caught.value.address == "127.0.0.2"
        assert caught.value.url == internal.url("/")
        assert internal.seen == []
    assert "/go" in site.paths()


@pytest.mark.parametrize("allowed", ["127.0.0.0/8", "localhost", " 10.0.0.0/8 , localhost "])
async def test_allowed_hosts_admit_named_hosts_and_ranges(site: SiteServer, allowed: str) -> None:
    site.routes["/"] = Reply(body="<p>intranet</p>")
    settings = make_settings(allow_private_networks=False, allowed_hosts=allowed)

    async with Fetcher(settings) as fetcher:
        page = await fetcher.fetch(f"http://localhost:{site.port}/")

    assert "intranet" in page.text()


def test_malformed_allowed_hosts_entry_is_reported() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        Fetcher(make_settings(allowed_hosts="10.0.0.0/33"))


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/file.html", "http://", "not a url", "/relative"],
)
async def test_only_absolute_http_urls_are_fetched(fetcher: Fetcher, url: str) -> None:
    with pytest.raises(InvalidUrlError) as caught:
        await fetcher.fetch(url)

    assert not caught.value.retryable
    assert caught.value.error_class == "invalid_url"


# --- robots.txt -------------------------------------------------------------------------------


async def test_robots_txt_disallow_is_enforced_for_our_agent(
    site: SiteServer, fetcher: Fetcher
) -> None:
    site.routes["/robots.txt"] = Reply(body=ROBOTS, content_type="text/plain")
    site.routes["/private/report"] = Reply(body="<p>secret</p>")
    site.routes["/public"] = Reply(body="<p>hello</p>")

    with pytest.raises(RobotsDisallowedError) as caught:
        await fetcher.fetch(site.url("/private/report"))
    public = await fetcher.fetch(site.url("/public"))
    await fetcher.fetch(site.url("/public"))

    error = caught.value
    assert not error.retryable
    assert error.error_class == "robots"
    assert site.url("/robots.txt") in str(error)
    assert "respect_robots: false" in str(error)
    assert "hello" in public.text()
    assert "/private/report" not in site.paths()
    assert site.paths().count("/robots.txt") == 1  # cached per site


async def test_robots_txt_opt_out(site: SiteServer) -> None:
    site.routes["/robots.txt"] = Reply(
        body="User-agent: *\nDisallow: /\n", content_type="text/plain"
    )
    site.routes["/page"] = Reply(body="<p>page</p>")

    async with Fetcher(make_settings()) as fetcher:
        by_source = await fetcher.fetch(site.url("/page"), respect_robots=False)
    async with Fetcher(make_settings(respect_robots=False)) as fetcher:
        by_worker = await fetcher.fetch(site.url("/page"))

    assert by_source.status == by_worker.status == 200
    assert "/robots.txt" not in site.paths()


@pytest.mark.parametrize("status", [404, 403, 500])
async def test_missing_or_broken_robots_txt_allows(
    site: SiteServer, fetcher: Fetcher, status: int
) -> None:
    site.routes["/robots.txt"] = Reply(status, body="User-agent: *\nDisallow: /\n")
    site.routes["/page"] = Reply(body="<p>page</p>")

    page = await fetcher.fetch(site.url("/page"))

    assert page.status == 200
    assert site.paths() == ["/robots.txt", "/page"]


# --- rate limiting ----------------------------------------------------------------------------


async def test_requests_to_one_host_are_spaced(site: SiteServer) -> None:
    site.routes["/"] = Reply(body="<p>x</p>")

    async with Fetcher(make_settings(host_rate_limit=5.0)) as fetcher:
        await asyncio.gather(
            *(fetcher.fetch(site.url("/"), respect_robots=False) for _ in range(4))
        )

    times = [seen.at for seen in site.seen]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 3
    assert min(gaps) >= 0.18, gaps  # 5 requests/second: 0.2 s apart


async def test_retry_after_holds_back_later_requests(site: SiteServer, fetcher: Fetcher) -> None:
    site.routes["/busy"] = Reply(429, body="slow down", headers={"Retry-After": "1"})
    site.routes["/page"] = Reply(body="<p>x</p>")

    with pytest.raises(HttpStatusFetchError) as caught:
        await fetcher.fetch(site.url("/busy"), respect_robots=False)
    started = time.monotonic()
    await fetcher.fetch(site.url("/page"), respect_robots=False)

    assert caught.value.error_class == "rate_limited"
    assert caught.value.retryable
    assert caught.value.retry_after == 1.0
    assert time.monotonic() - started >= 0.9


# --- limits and content types -----------------------------------------------------------------


async def test_body_over_the_limit_by_content_length(site: SiteServer) -> None:
    site.routes["/big"] = Reply(body="<p>" + "x" * 5000 + "</p>")

    async with Fetcher(make_settings(fetch_max_bytes=1024)) as fetcher:
        with pytest.raises(BodyTooLargeError) as caught:
            await fetcher.fetch(site.url("/big"))

    assert not caught.value.retryable
    assert caught.value.error_class == "too_large"
    assert "1,024 bytes" in str(caught.value)
    assert "Content-Length" in str(caught.value)
    assert "MENDLINE_FETCH_MAX_BYTES" in str(caught.value)


async def test_body_over_the_limit_while_streaming(site: SiteServer) -> None:
    site.routes["/big"] = Reply(body="<p>" + "x" * 50_000 + "</p>", chunked=True)

    async with Fetcher(make_settings(fetch_max_bytes=1024)) as fetcher:
        with pytest.raises(BodyTooLargeError) as caught:
            await fetcher.fetch(site.url("/big"))

    assert "cut off" in str(caught.value)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("image/png", b"\x89PNG\r\n\x1a\n"), ("application/pdf", b"%PDF-1.7"), (None, b"\x00\x01")],
)
async def test_unreadable_content_type_is_refused(
    site: SiteServer, fetcher: Fetcher, content_type: str | None, body: bytes
) -> None:
    site.routes["/file"] = Reply(body=body, content_type=content_type)

    with pytest.raises(NotHtmlError) as caught:
        await fetcher.fetch(site.url("/file"))

    assert not caught.value.retryable
    assert caught.value.error_class == "not_html"
    if content_type:
        assert content_type in str(caught.value)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/ld+json", "text/plain", "application/rss+xml", "text/xml"],
)
async def test_readable_content_types_are_accepted(
    site: SiteServer, fetcher: Fetcher, content_type: str
) -> None:
    site.routes["/doc"] = Reply(body="{}", content_type=content_type)

    page = await fetcher.fetch(site.url("/doc"))

    assert page.content_type == content_type


# --- error statuses and network failures ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error_class", "retryable"),
    [
        (404, "no such page", "http_4xx", False),
        (410, "gone", "http_4xx", False),
        (403, "forbidden", "http_4xx", False),
        (403, "<title>Attention Required!</title><div class='cf-challenge'>", "blocked", False),
        (401, "<div id='px-captcha'></div>", "blocked", False),
        (408, "timeout", "http_4xx", True),
        (429, "too many", "rate_limited", True),
        (500, "oops", "http_5xx", True),
        (503, "maintenance", "http_5xx", True),
    ],
)
async def test_error_statuses_are_classified(
    site: SiteServer,
    fetcher: Fetcher,
    status: int,
    body: str,
    error_class: str,
    retryable: bool,
) -> None:
    site.routes["/x"] = Reply(status, body=body)

    with pytest.raises(HttpStatusFetchError) as caught:
        await fetcher.fetch(site.url("/x"))

    error = caught.value
    assert error.status == status
    assert error.error_class == error_class
    assert error.retryable is retryable
    assert f"HTTP {status}" in str(error)
    assert site.url("/x") in str(error)


async def test_connection_refused_is_retryable(fetcher: Fetcher) -> None:
    url = f"http://127.0.0.1:{free_port()}/"

    with pytest.raises(ConnectError) as caught:
        await fetcher.fetch(url)

    assert caught.value.retryable
    assert caught.value.error_class == "network"
    assert url in str(caught.value)


@pytest.mark.parametrize("allow_private", [True, False])
async def test_unknown_host_is_a_retryable_dns_error(allow_private: bool) -> None:
    settings = make_settings(allow_private_networks=allow_private)
    async with Fetcher(settings) as fetcher:
        with pytest.raises(DnsError) as caught:
            await fetcher.fetch("http://no-such-host.invalid/")

    assert caught.value.retryable
    assert caught.value.error_class == "dns"


async def test_slow_server_times_out(site: SiteServer) -> None:
    site.routes["/slow"] = Reply(body="<p>late</p>", delay=3.0)

    async with Fetcher(make_settings(fetch_timeout=0.5)) as fetcher:
        started = time.monotonic()
        with pytest.raises(FetchTimeoutError) as caught:
            await fetcher.fetch(site.url("/slow"), respect_robots=False)

    assert time.monotonic() - started < 2.0
    assert caught.value.retryable
    assert caught.value.error_class == "timeout"
    assert "MENDLINE_FETCH_TIMEOUT" in str(caught.value)


# --- looks_script_built -----------------------------------------------------------------------


def fixture_page(name: str, content_type: str = "text/html") -> FetchedPage:
    return FetchedPage(
        url=f"http://example.com/{name}",
        final_url=f"http://example.com/{name}",
        status=200,
        headers={},
        content_type=content_type,
        charset=None,
        body=(FIXTURES / name).read_bytes(),
        rendered=False,
        elapsed_ms=1.0,
    )


@pytest.mark.parametrize(
    "name", ["js-list.html", "react-shell.html", "next-shell.html", "inline-state.html"]
)
def test_script_built_shells_are_recognised(name: str) -> None:
    assert looks_script_built(fixture_page(name))


@pytest.mark.parametrize("name", ["article.html", "small-static.html", "cp1252.html"])
def test_server_rendered_pages_are_not_script_built(name: str) -> None:
    assert not looks_script_built(fixture_page(name))


def test_non_html_is_never_script_built() -> None:
    assert not looks_script_built(fixture_page("plants.json", "application/json"))
