"""A tiny forward proxy that applies the SSRF guard to everything a rendered page loads.

Why a proxy and not Playwright's ``context.route``: routes never see redirect hops (the
browser follows a ``302`` to ``http://10.0.0.1/`` without asking), nor connections the
page opens in ways Playwright does not intercept. Every request of a browser context
configured with this proxy — navigation, redirect hops, subresources, iframes, workers,
WebSockets — reaches :meth:`GuardProxy._handle` instead, and the proxy connects to the
very address the guard checked, so DNS rebinding cannot sneak past it either.

It speaks just enough HTTP/1.1: ``CONNECT host:port`` tunnels (HTTPS, WSS) and
absolute-form plain HTTP requests, one request per connection (``Connection: close`` is
forced on both sides, so the browser never sends a second request, possibly for another
host, down a connection already open to the first). One proxy serves one browser
context and is closed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from activities.fetch.errors import (
    ConnectError,
    FetchError,
    FetchTimeoutError,
    InvalidUrlError,
)
from activities.fetch.guard import HostGuard, IPAddress

logger = logging.getLogger(__name__)

ERROR_HEADER = "x-mendline-fetch-error"
"""Set on answers the proxy makes up itself (the value is the error class)."""
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
)
_STATUS_FOR_CLASS = {
    "ssrf": (403, "Forbidden"),
    "invalid_url": (400, "Bad Request"),
    "timeout": (504, "Gateway Timeout"),
}
_CHUNK = 64 * 1024


class GuardProxy:
    """An HTTP proxy on 127.0.0.1 that refuses hosts the guard refuses.

    Args:
        guard: Decides which hosts may be reached.
        timeout: Seconds for connecting upstream and for any one read to stall.

    Attributes:
        failures: Requests the proxy could not serve, keyed by URL (plain HTTP) or by
            ``host:port`` (tunnels), with the error explaining why.
    """

    def __init__(self, guard: HostGuard, *, timeout: float) -> None:
        self.guard = guard
        self.timeout = timeout
        self.failures: dict[str, FetchError] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def start(self) -> str:
        """Listen on an ephemeral port; returns the proxy URL for the browser."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop listening and cut every open connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def failure_for(self, url: str) -> FetchError | None:
        """The error that stopped a request to ``url``, if the proxy recorded one."""
        if url in self.failures:
            return self.failures[url]
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        return self.failures.get(_authority(parts.hostname or "", port))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
            method, target, version = request_line.split(" ", 2)
            if method.upper() == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(method, target, version, header_lines, reader, writer)
        except (ConnectionError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            pass  # the browser went away or spoke nonsense: nothing to answer
        except asyncio.LimitOverrunError:
            with contextlib.suppress(ConnectionError):
                writer.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
        except asyncio.CancelledError:
            # close() cuts connections by cancelling their tasks. asyncio's server reports
            # a handler task that ends cancelled as an error, so end it normally instead.
            if not self._closing:
                raise
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port_text = target.rpartition(":")
        host = host.strip("[]").lower()
        key = _authority(host, int(port_text))
        upstream = await self._open(key, host, int(port_text), f"https://{target}/", writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        try:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            up_writer.close()

    async def _forward(
        self,
        method: str,
        target: str,
        version: str,
        header_lines: list[str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            error = InvalidUrlError(f"the proxy only forwards http:// URLs, got {target!r}")
            self._refuse(writer, error)
            return
        port = parts.port or 80
        upstream = await self._open(target, parts.hostname.lower(), port, target, writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        body_pipe: asyncio.Task[None] | None = None
        try:
            path = parts.path or "/"
            if parts.query:
                path = f"{path}?{parts.query}"
            headers = [line for line in header_lines if _name(line) not in _HOP_HEADERS]
            length = next(
                (int(line.split(":", 1)[1]) for line in headers if _name(line) == "content-length"),
                0,
            )
            chunked = any(_name(line) == "transfer-encoding" for line in headers)
            head = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close"])
            up_writer.write(head.encode("latin-1") + b"\r\n\r\n")
            if length:
                up_writer.write(await reader.readexactly(length))
            elif chunked:
                body_pipe = asyncio.create_task(self._pipe(reader, up_writer))
            await up_writer.drain()
            response_head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), self.timeout)
            status_line, *response_lines = (
                response_head.decode("latin-1").rstrip("\r\n").split("\r\n")
            )
            kept = [line for line in response_lines if _name(line) not in _HOP_HEADERS]
            writer.write(
                "\r\n".join([status_line, *kept, "Connection: close"]).encode("latin-1")
                + b"\r\n\r\n"
            )
            await self._pipe(up_reader, writer)
        finally:
            if body_pipe is not None:
                body_pipe.cancel()
            up_writer.close()

    async def _open(
        self, key: str, host: str, port: int, url: str, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Check ``host`` and connect to one of its checked addresses, or refuse."""
        try:
            addresses = await self.guard.check_host(host, port, url=url, resolve=True)
            return await self._connect(addresses, port, url)
        except FetchError as exc:
            logger.info("browser request refused: %s", exc)
            self.failures.setdefault(key, exc)
            self._refuse(writer, exc)
            return None

    async def _connect(
        self, addresses: tuple[IPAddress, ...], port: int, url: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        last: Exception | None = None
        for address in addresses:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(str(address), port), self.timeout
                )
            except TimeoutError as exc:
                last = exc
            except OSError as exc:
                last = exc
        if isinstance(last, TimeoutError):
            raise FetchTimeoutError(
                f"connecting to {url} timed out after {self.timeout:g}s; it will be retried",
                url=url,
            )
        raise ConnectError(
            f"cannot connect to {url}: {last}; the server is down or refusing connections "
            "(it will be retried)",
            url=url,
        )

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await asyncio.wait_for(source.read(_CHUNK), self.timeout):
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (ConnectionError, TimeoutError, OSError):
            sink.close()

    @staticmethod
    def _refuse(writer: asyncio.StreamWriter, error: FetchError) -> None:
        status, reason = _STATUS_FOR_CLASS.get(error.error_class, (502, "Bad Gateway"))
        body = f"Blocked by Mendline: {error}\n".encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            f"{ERROR_HEADER}: {error.error_class}\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode("ascii") + body)


def _name(header_line: str) -> str:
    return header_line.split(":", 1)[0].strip().lower()


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
