"""Rendering with the real Chromium (``/usr/bin/chromium``) against real local servers.

The module shares one Fetcher (one browser launch). Its guard is on: only 127.0.0.1 is
allowed, so 127.0.0.2 plays the internal host a page must not reach.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from activities.fetch import (
    ConnectError,
    Fetcher,
    HttpStatusFetchError,
    RenderError,
    RobotsDisallowedError,
    UrlNotAllowedError,
    looks_script_built,
)
from models.settings import Settings
from tests.fixtures.fetch.server import Reply, SiteServer
from tests.support.procs import free_port

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium`",
)


def guarded_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "allow_private_networks": False,
        "allowed_hosts": "127.0.0.1",
        "host_rate_limit": 1000.0,
        "fetch_timeout": 10.0,
        "chromium_path": CHROMIUM,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer() as server:
        server.serve_file("/plants", "js-list.html")
        server.serve_file("/plants.json", "plants.json", "application/json")
        yield server


@pytest.fixture(scope="module")
def internal(site: SiteServer) -> Iterator[SiteServer]:
    with SiteServer("127.0.0.2", site.port) as server:
        server.routes["/secret"] = Reply(body="internal secret", content_type="text/plain")
        server.routes["/pixel.gif"] = Reply(body=b"GIF89a", content_type="image/gif")
        yield server


@pytest.fixture(scope="module")
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(guarded_settings()) as fetcher:
        yield fetcher


@needs_chromium
async def test_script_built_list_renders_with_its_items(site: SiteServer, fetcher: Fetcher) -> None:
    static = await fetcher.fetch(site.url("/plants"))
    rendered = await fetcher.fetch(site.url("/plants"), render=True)

    assert "Monstera" not in static.text()
    assert looks_script_built(static)

    assert rendered.rendered
    assert rendered.status == 200
    assert rendered.content_type == "text/html"
    assert rendered.final_url == site.url("/plants")
    text = rendered.text()
    assert text.count('class="plant"') == 3
    assert "Monstera deliciosa – €24.00" in text
    assert "Calathea orbifolia – €18.75" in text
    assert "Plants in stock" in text
    assert not looks_script_built(rendered)
    ua_headers = [seen.headers.get("User-Agent") for seen in site.seen]
    assert guarded_settings().user_agent in ua_headers


@needs_chromium
async def test_in_page_requests_to_disallowed_hosts_are_blocked(
    site: SiteServer, internal: SiteServer, fetcher: Fetcher
) -> None:
    site.routes["/leaky"] = Reply(
        body=f"""<!DOCTYPE html><html><body>
        <p id="status">waiting</p>
        <img src="{internal.url("/pixel.gif")}">
        <img src="https://{internal.host}:{internal.port}/pixel.gif">
        <iframe src="{internal.url("/secret")}"></iframe>
        <script>
          try {{ new WebSocket("ws://{internal.host}:{internal.port}/socket"); }} catch (e) {{}}
          fetch("{internal.url("/secret")}", {{mode: "no-cors"}})
            .then(() => {{ document.getElementById("status").textContent = "request sent"; }})
            .catch(() => {{ document.getElementById("status").textContent = "request failed"; }});
        </script>
        </body></html>"""
    )

    page = await fetcher.fetch(site.url("/leaky"), render=True)

    assert page.rendered
    assert "internal secret" not in page.text()
    # Nothing reached 127.0.0.2: not the image, the frame, fetch(), TLS or a WebSocket.
    assert internal.seen == []
    assert internal.connections == 0


@needs_chromium
async def test_browser_redirect_to_disallowed_host_is_refused(
    site: SiteServer, internal: SiteServer, fetcher: Fetcher
) -> None:
    site.routes["/jump"] = Reply(302, headers={"Location": internal.url("/secret")})

    with pytest.raises(UrlNotAllowedError) as caught:
        await fetcher.fetch(site.url("/jump"), render=True)

    assert caught.value.address == "127.0.0.2"
    assert not caught.value.retryable
    assert internal.seen == []


@needs_chromium
async def test_render_checks_guard_and_robots_before_navigating(
    site: SiteServer, fetcher: Fetcher
) -> None:
    with pytest.raises(UrlNotAllowedError):
        await fetcher.fetch("http://10.0.0.1/", render=True)

    with SiteServer() as other:
        other.routes["/robots.txt"] = Reply(body="User-agent: *\nDisallow: /\n")
        other.routes["/"] = Reply(body="<p>home</p>")
        with pytest.raises(RobotsDisallowedError):
            await fetcher.fetch(other.url("/"), render=True)
        assert other.paths() == ["/robots.txt"]


@needs_chromium
async def test_rendered_error_status_is_classified(site: SiteServer, fetcher: Fetcher) -> None:
    site.routes["/down"] = Reply(503, body="<h1>Down for maintenance</h1>")

    with pytest.raises(HttpStatusFetchError) as caught:
        await fetcher.fetch(site.url("/down"), render=True)

    assert caught.value.status == 503
    assert caught.value.retryable
    assert "Down for maintenance" in caught.value.body_start


@needs_chromium
async def test_render_of_a_dead_server_is_a_retryable_connect_error(fetcher: Fetcher) -> None:
    url = f"http://127.0.0.1:{free_port()}/"

    with pytest.raises(ConnectError) as caught:
        await fetcher.fetch(url, render=True, respect_robots=False)

    assert caught.value.retryable
    assert url in str(caught.value)


async def test_missing_browser_is_a_clear_permanent_error(site: SiteServer) -> None:
    settings = guarded_settings(chromium_path="/nonexistent/chromium")
    async with Fetcher(settings) as fetcher:
        with pytest.raises(RenderError) as caught:
            await fetcher.fetch(site.url("/plants"), render=True)

    message = str(caught.value)
    assert not caught.value.retryable
    assert "/nonexistent/chromium" in message
    assert "apt-get install chromium" in message
    assert "MENDLINE_CHROMIUM_PATH" in message
