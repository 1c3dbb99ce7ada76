"""A local HTTP proxy in front of a site that holds back the requests a test chooses.

A fault test needs a fetch to be in flight when it kills a worker. :class:`HoldingProxy`
forwards every ``GET`` to the upstream site unchanged (status, body, content type); a
request picked by the predicate given to :meth:`HoldingProxy.hold` waits until
:meth:`HoldingProxy.release` (or :attr:`HoldingProxy.max_hold` seconds) before it is
forwarded. :attr:`HoldingProxy.holding` says how many requests wait right now, so the test
knows the worker is inside the fetch::

    with DemoServer().start() as demo, HoldingProxy(demo.url) as proxy:
        proxy.hold(lambda path: path.startswith("/sites/news"))
        ...  # wait until proxy.holding, kill the worker
        proxy.release()

Standard library only (like ``workers.demo_server``): it starts in milliseconds and serves
each request on its own thread, so a held request never blocks the others.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

UPSTREAM_TIMEOUT = 20.0
"""Seconds the proxy waits for the upstream site."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        proxy = self.server.proxy
        proxy._wait_if_held(self.path)
        try:
            with urllib.request.urlopen(
                proxy.upstream + self.path, timeout=UPSTREAM_TIMEOUT
            ) as response:
                status, body = response.status, response.read()
                content_type = response.headers.get("Content-Type")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
            content_type = exc.headers.get("Content-Type")
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client is gone: a killed worker, which is the point

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: HoldingProxy

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class HoldingProxy:
    """Forward requests to ``upstream``, holding those :meth:`hold` picks.

    Attributes:
        upstream: Base URL of the site, e.g. ``http://127.0.0.1:8765``.
        max_hold: Longest a request is held, in seconds, if nobody releases it.
        arrived: Paths of every request received, in order.
        held: Requests held so far.
        holding: Requests being held right now.
    """

    def __init__(self, upstream: str, *, max_hold: float = 15.0) -> None:
        self.upstream = upstream.rstrip("/")
        self._hold_if: Callable[[str], bool] | None = None
        self.max_hold = max_hold
        self.arrived: list[str] = []
        self.held = 0
        self.holding = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.proxy = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str = "/") -> str:
        """The proxy's URL for ``path`` of the upstream site."""
        return f"http://127.0.0.1:{self.port}{path}"

    def hold(self, when: Callable[[str], bool]) -> None:
        """Hold from now on every request whose path (with query) ``when`` returns true for.

        ``when`` runs on the request's thread as it arrives, one request at a time.
        """
        with self._lock:
            self._hold_if = when
            self._released = threading.Event()

    def release(self) -> None:
        """Hold nothing more and let every held request through now."""
        with self._lock:
            self._hold_if = None
            self._released.set()

    def _wait_if_held(self, path: str) -> None:
        with self._lock:
            self.arrived.append(path)
            hold = self._hold_if is not None and self._hold_if(path)
            if hold:
                self.held += 1
                self.holding += 1
                released = self._released
        if not hold:
            return
        try:
            released.wait(self.max_hold)
        finally:
            with self._lock:
                self.holding -= 1

    def start(self) -> HoldingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HoldingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
