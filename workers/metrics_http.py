"""The worker's Prometheus endpoint: Mendline's metrics and the Temporal SDK's, on one port.

Two sources make up one ``/metrics`` page:

* Mendline's own metrics, in :data:`activities.metrics.MENDLINE_REGISTRY`;
* the Temporal SDK's runtime metrics (``temporal_request_total``,
  ``temporal_workflow_completed_total``, ``temporal_activity_execution_latency``, slots,
  pollers, …). Core, the SDK's Rust engine, records these and serves them itself when its
  :class:`~temporalio.runtime.Runtime` is built with a
  :class:`~temporalio.runtime.PrometheusConfig`. That exporter listens on a
  private loopback port chosen here; each scrape of ``/metrics`` fetches its page and
  appends it, so Prometheus needs one target per worker, not two.

The runtime must exist before the client connects (a client keeps the runtime it was built
with), so :func:`workers.client.connect` asks :func:`sdk_telemetry` for it; the worker then
finds the private address again through :func:`sdk_metrics_url`.

The HTTP server is the standard library's threaded one, not prometheus_client's
``start_http_server``: that serves exactly one registry, and the Temporal half of the page
is text fetched from Core rather than a registry.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities.metrics import MENDLINE_REGISTRY

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
SDK_SCRAPE_TIMEOUT_SECONDS = 2.0
"""How long one ``/metrics`` request waits for Core's page before serving Mendline's alone."""
_RUNTIME_ATTEMPTS = 5


@dataclass(frozen=True)
class SdkTelemetry:
    """The process's Temporal runtime and where Core serves its metrics.

    Attributes:
        runtime: The runtime every Mendline client of this process is built with.
        url: Core's private Prometheus page (``http://127.0.0.1:<port>/metrics``).
    """

    runtime: Runtime
    url: str


_sdk: SdkTelemetry | None = None
_sdk_lock = threading.Lock()


def sdk_telemetry() -> SdkTelemetry:
    """The Temporal runtime with Prometheus metrics on a loopback port, made once per process.

    Every runtime starts its own thread pool (and this one an HTTP listener), so all clients
    of a process share one.

    Raises:
        RuntimeError: Core could not bind a loopback port in several attempts.
    """
    global _sdk
    with _sdk_lock:
        if _sdk is None:
            _sdk = _start_sdk_runtime()
        return _sdk


def sdk_metrics_url(client: Client) -> str | None:
    """Core's private metrics page for ``client``, or None if its runtime has none.

    None for a client built without Mendline's telemetry runtime (``MENDLINE_METRICS_PORT=0``,
    or a client not made by :func:`workers.client.connect`).
    """
    runtime = client.service_client.config.runtime
    if _sdk is not None and runtime is _sdk.runtime:
        return _sdk.url
    return None


def _start_sdk_runtime() -> SdkTelemetry:
    error: Exception | None = None
    for _ in range(_RUNTIME_ATTEMPTS):
        port = _free_loopback_port()
        config = PrometheusConfig(
            bind_address=f"127.0.0.1:{port}",
            # Seconds, Prometheus' base unit, as in Mendline's histograms; counters end in
            # _total as Prometheus names them (temporal_workflow_failed_total), which is
            # also how the text parser and the client libraries read them.
            durations_as_seconds=True,
            counters_total_suffix=True,
        )
        try:
            runtime = Runtime(telemetry=TelemetryConfig(metrics=config))
        except Exception as exc:  # the port was taken between choosing and binding it
            error = exc
            continue
        return SdkTelemetry(runtime=runtime, url=f"http://127.0.0.1:{port}{METRICS_PATH}")
    raise RuntimeError(
        f"the Temporal SDK's metrics exporter could not bind a loopback port: {error}; "
        "set MENDLINE_METRICS_PORT=0 to run without metrics"
    ) from error


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MetricsServer:
    """Serve ``GET /metrics`` from a background thread until :meth:`stop`.

    Args:
        port: TCP port to listen on; 0 picks a free one (see :attr:`port`).
        host: Interface to bind; all of them by default, so Prometheus in another
            container can scrape the worker.
        sdk_url: Core's private metrics page to append (:func:`sdk_metrics_url`); None
            serves Mendline's metrics only.
        registry: The registry to serve (Mendline's by default).
    """

    def __init__(
        self,
        port: int,
        *,
        host: str = "0.0.0.0",
        sdk_url: str | None = None,
        registry: CollectorRegistry = MENDLINE_REGISTRY,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.sdk_url = sdk_url
        self.registry = registry
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (differs from the requested one when that was 0)."""
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    def start(self) -> None:
        """Bind the port and serve in a daemon thread (no-op when already running).

        Raises:
            OSError: The port cannot be bound (in use, or privileged).
        """
        if self._server is not None:
            return
        server = ThreadingHTTPServer((self.host, self.requested_port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="mendline-metrics", daemon=True
        )
        self._thread.start()
        log.info("serving metrics on http://%s:%d%s", self.host, self.port, METRICS_PATH)

    def stop(self) -> None:
        """Stop serving and release the port (safe to call more than once)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def render(self) -> bytes:
        """The page: Mendline's registry, then Core's metrics when they can be fetched."""
        page = generate_latest(self.registry)
        if self.sdk_url is None:
            return page
        try:
            # One short connection per scrape (every 15 s or so): no client to keep alive.
            response = httpx.get(self.sdk_url, timeout=SDK_SCRAPE_TIMEOUT_SECONDS)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            # A scrape without the SDK half beats a failed scrape: Mendline's metrics still
            # arrive, and the gap in temporal_* series shows the problem on the dashboard.
            log.warning("Temporal SDK metrics unavailable at %s: %s", self.sdk_url, exc)
            return page + f"# Temporal SDK metrics unavailable: {exc}\n".encode()
        sdk = response.content
        return page + sdk + (b"" if sdk.endswith(b"\n") or not sdk else b"\n")


def _handler_for(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != METRICS_PATH:
                self._reply(404, b"Mendline serves its metrics at /metrics\n", "text/plain")
                return
            try:
                body = server.render()
            except Exception:
                log.exception("rendering /metrics failed")
                self._reply(500, b"rendering metrics failed; see the worker log\n", "text/plain")
                return
            self._reply(200, body, CONTENT_TYPE_PLAIN_0_0_4)

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # One line per scrape every 15 s would drown the worker log.
            log.debug("metrics request: " + format, *args)

    return MetricsHandler
