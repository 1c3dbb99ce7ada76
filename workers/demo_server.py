"""A small local HTTP API that plays "the outside world" for the demo and the tests.

It serves deterministic shop data (orders per day, customers, products, inventory per
warehouse) and a few misbehaving endpoints that exercise retries and timeouts::

    GET /health                      200 {"status": "ok"}
    GET /orders?day=YYYY-MM-DD       the day's orders; same day, same data; 400 on a bad day
    GET /customers                   list of customers
    GET /products                    list of products
    GET /inventory?warehouse=X       stock of one warehouse (see WAREHOUSES); 404 if unknown
    GET /flaky?key=K&fail=N          503 for the first N requests with key K, then 200
    GET /slow?seconds=S              answers after S seconds (at most MAX_SLOW_SECONDS)
    GET /status/CODE                 answers with that status (200-599)
    GET|POST /sites/...              demo websites in two layouts (see workers.demo_sites)

Run it in the foreground with ``python -m workers.demo_server --port 8765`` or embed it::

    with DemoServer().start() as server:
        httpx.get(f"{server.url}/orders", params={"day": "2026-11-20"})

It uses the standard library's ``ThreadingHTTPServer`` rather than a web framework on
purpose: it must start in milliseconds inside tests, have no dependency beyond Python, and
answer concurrent requests (one thread per request) so parallel tasks really run in parallel.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from workers.demo_sites import DemoSites

log = logging.getLogger("mendline.demo_server")

DEFAULT_PORT = 8765
"""Port of ``mendline demo serve``; the example pipelines' ``api`` param points here."""

MAX_SLOW_SECONDS = 60.0
"""Upper bound of ``/slow`` so a typo cannot tie up a server thread for hours."""

WAREHOUSES = ("ams", "ber", "lis")
"""Warehouse codes ``/inventory`` knows."""

FX_RATES_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}
"""Rate to euro that orders carry in ``fx_rate``, so ``amount * fx_rate`` is in euro."""

_KIND_NAMES = {int: "a whole number", float: "a number"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIRST = (
    "Ana",
    "Ben",
    "Chloe",
    "Dario",
    "Eva",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaja",
    "Luca",
    "Mila",
    "Noah",
    "Olga",
    "Pavel",
)
_LAST = (
    "Silva",
    "Meyer",
    "Dubois",
    "Rossi",
    "Novak",
    "Haddad",
    "Jensen",
    "Moreau",
    "Costa",
    "Weber",
    "Kowalski",
    "Bauer",
    "Lind",
    "Ferreira",
    "Ivanova",
    "Horvat",
)
_PRODUCTS = (
    ("espresso beans 1kg", "coffee", 24.9),
    ("filter beans 500g", "coffee", 12.5),
    ("green tea 100g", "tea", 7.9),
    ("chai blend 250g", "tea", 9.5),
    ("ceramic mug", "kitchen", 14.0),
    ("hand grinder", "kitchen", 59.0),
    ("pour-over kettle", "kitchen", 42.0),
    ("paper filters x100", "kitchen", 4.5),
    ("oat milk 1l", "grocery", 2.9),
    ("dark chocolate 100g", "grocery", 3.5),
)


class _DemoError(Exception):
    """A request the demo API refuses; becomes a JSON error response."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# Deterministic data


def customers() -> list[dict[str, Any]]:
    """The fixed customer list served by ``/customers`` and referenced by orders."""
    rng = random.Random("customers")
    result = []
    for index in range(12):
        first, last = _FIRST[index], _LAST[(index * 5) % len(_LAST)]
        result.append(
            {
                "customer_id": f"C{index + 1:03d}",
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@example.com",
                "country": rng.choice(("NL", "DE", "PT", "FR", "IT")),
                "tier": rng.choice(("basic", "basic", "plus", "pro")),
            }
        )
    return result


def products() -> list[dict[str, Any]]:
    """The fixed product catalogue served by ``/products``."""
    return [
        {"sku": f"SKU-{index + 1:03d}", "name": name, "category": category, "price": price}
        for index, (name, category, price) in enumerate(_PRODUCTS)
    ]


def inventory(warehouse: str) -> dict[str, Any]:
    """Stock levels of one warehouse; each warehouse stocks a different subset of products.

    Raises:
        _DemoError: 404 when the warehouse is not one of :data:`WAREHOUSES`.
    """
    if warehouse not in WAREHOUSES:
        raise _DemoError(
            HTTPStatus.NOT_FOUND,
            f"unknown warehouse {warehouse!r}; known warehouses: {', '.join(WAREHOUSES)}",
        )
    rng = random.Random(f"inventory/{warehouse}")
    items = [
        {"sku": item["sku"], "on_hand": rng.randint(0, 250), "reserved": rng.randint(0, 20)}
        for item in products()
        if rng.random() < 0.75
    ]
    return {"warehouse": warehouse, "stock": items}


def orders(day: str) -> dict[str, Any]:
    """The orders of one day, identical on every call for the same day.

    Amounts are in EUR, USD or GBP; ``fx_rate`` converts them to euro.
    Most orders are paid and clean. Some are refunded (amount ≤ 0), pending or cancelled,
    some emails are missing or in mixed case, and one order may appear twice (an upstream
    pagination glitch), so that transform and validate steps have real work to do.

    Raises:
        _DemoError: 400 when ``day`` is not a valid ``YYYY-MM-DD`` date.
    """
    start = _parse_day(day)
    rng = random.Random(day)
    people = customers()
    result: list[dict[str, Any]] = []
    for index in range(rng.randint(20, 40)):
        person = rng.choice(people)
        status = rng.choices(("paid", "refunded", "pending", "cancelled"), (80, 8, 8, 4))[0]
        amount = round(rng.uniform(4.0, 180.0), 2)
        if status == "refunded":
            amount = -amount if rng.random() < 0.7 else 0.0
        email: str | None = person["email"]
        roll = rng.random()
        if roll < 0.08:
            email = None
        elif roll < 0.25:
            email = person["name"].replace(" ", ".") + "@Example.COM"
        currency = rng.choices(tuple(FX_RATES_EUR), (70, 20, 10))[0]
        created = start + timedelta(seconds=rng.randint(0, 86399))
        result.append(
            {
                "order_id": f"ORD-{day.replace('-', '')}-{index + 1:04d}",
                "customer_id": person["customer_id"],
                "customer": person["name"],
                "email": email,
                "amount": amount,
                "currency": currency,
                "fx_rate": FX_RATES_EUR[currency],
                "status": status,
                "created_at": created.isoformat(),
            }
        )
    if rng.random() < 0.5:
        result.insert(rng.randrange(len(result)), dict(rng.choice(result)))
    return {"day": day, "orders": result}


def _parse_day(day: str) -> datetime:
    try:
        if not _DAY.match(day):
            raise ValueError(day)
        parsed = date.fromisoformat(day)
    except ValueError:
        raise _DemoError(
            HTTPStatus.BAD_REQUEST,
            f"day must be a date as YYYY-MM-DD, e.g. 2026-11-20; got {day!r}",
        ) from None
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# HTTP plumbing


class _FlakyCounter:
    """Requests seen per ``/flaky`` key; shared by all request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def hit(self, key: str) -> int:
        with self._lock:
            self._counts[key] = count = self._counts.get(key, 0) + 1
            return count

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    flaky: _FlakyCounter
    sites: DemoSites


Response = tuple[HTTPStatus | int, Any]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "MendlineDemo/1"

    def do_GET(self) -> None:
        if self._is_site():
            return self._site()
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        path = parts.path.rstrip("/") or "/"
        try:
            route = _ROUTES.get(path)
            if route is not None:
                status, body = route(self, query)
            elif path.startswith("/status/"):
                status, body = self._status(path.removeprefix("/status/"))
            else:
                raise _DemoError(
                    HTTPStatus.NOT_FOUND,
                    f"no endpoint {path!r}; try one of {', '.join(sorted(_ROUTES))}, /status/CODE",
                )
        except _DemoError as exc:
            status, body = exc.status, {"error": str(exc)}
        self._send(status, body)

    def _refuse_method(self) -> None:
        if self._is_site():
            return self._site()
        message = f"{self.command} is not supported; the demo API is read-only, use GET"
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": message})

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse_method

    def _is_site(self) -> bool:
        path = urlsplit(self.path).path
        return path == "/sites" or path.startswith("/sites/")

    def _site(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        answer = self.server.sites.handle(self.command, self.path, body, host)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")  # a redesign must show up at once
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def _send(self, status: HTTPStatus | int, body: Any) -> None:
        # 1xx, 204 and 304 must not carry a body.
        has_body = not (int(status) < 200 or int(status) in (204, 304))
        data = json.dumps(body).encode() if has_body else b""
        self.send_response(int(status))
        if has_body:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if has_body and self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib writes every request to stderr; route it through logging instead.
        log.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.warning("%s %s", self.address_string(), format % args)

    # -- endpoints -------------------------------------------------------------------------

    def _health(self, query: Mapping[str, str]) -> Response:
        return HTTPStatus.OK, {"status": "ok"}

    def _orders(self, query: Mapping[str, str]) -> Response:
        return HTTPStatus.OK, orders(_required(query, "day", "2026-11-20"))

    def _customers(self, query: Mapping[str, str]) -> Response:
        return HTTPStatus.OK, customers()

    def _products(self, query: Mapping[str, str]) -> Response:
        return HTTPStatus.OK, products()

    def _inventory(self, query: Mapping[str, str]) -> Response:
        return HTTPStatus.OK, inventory(_required(query, "warehouse", WAREHOUSES[0]))

    def _flaky(self, query: Mapping[str, str]) -> Response:
        key = _required(query, "key", "my-run")
        fail = _number(query, "fail", int, default=1, low=0, high=1000)
        attempts = self.server.flaky.hit(key)
        if attempts <= fail:
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": f"flaky endpoint failing on purpose ({attempts} of {fail} failures)",
                "key": key,
                "attempts": attempts,
            }
        return HTTPStatus.OK, {"ok": True, "key": key, "attempts": attempts}

    def _slow(self, query: Mapping[str, str]) -> Response:
        seconds = _number(query, "seconds", float, default=1.0, low=0.0, high=MAX_SLOW_SECONDS)
        time.sleep(seconds)
        return HTTPStatus.OK, {"ok": True, "slept": seconds}

    def _status(self, code_text: str) -> Response:
        code = int(code_text) if code_text.isdigit() else 0
        # 1xx are interim responses; a final 1xx would leave the client waiting forever.
        if not 200 <= code <= 599:
            raise _DemoError(
                HTTPStatus.BAD_REQUEST,
                f"/status/CODE needs a status from 200 to 599, got {code_text!r}",
            )
        return code, {"status": code}


_ROUTES: dict[str, Callable[[_Handler, Mapping[str, str]], Response]] = {
    "/health": _Handler._health,
    "/orders": _Handler._orders,
    "/customers": _Handler._customers,
    "/products": _Handler._products,
    "/inventory": _Handler._inventory,
    "/flaky": _Handler._flaky,
    "/slow": _Handler._slow,
}


def _required(query: Mapping[str, str], name: str, example: str) -> str:
    value = query.get(name, "")
    if not value:
        raise _DemoError(
            HTTPStatus.BAD_REQUEST, f"missing query parameter {name!r}, e.g. ?{name}={example}"
        )
    return value


def _number(
    query: Mapping[str, str],
    name: str,
    kind: type[int] | type[float],
    default: float,
    low: float,
    high: float,
) -> Any:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise _DemoError(
            HTTPStatus.BAD_REQUEST,
            f"query parameter {name!r} must be {_KIND_NAMES[kind]} from {low:g} to {high:g}, "
            f"got {text!r}",
        )
    return value


# ---------------------------------------------------------------------------------------------
# Public API


class DemoServer:
    """The demo API running on a background thread.

    Example::

        server = DemoServer().start()          # port 0: any free port
        try:
            print(server.url)                 # http://127.0.0.1:54321
        finally:
            server.stop()
    """

    def __init__(self) -> None:
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> DemoServer:
        """Bind ``host:port`` (``0`` picks a free port) and serve on a daemon thread.

        Returns:
            This server, so ``DemoServer().start()`` reads naturally.

        Raises:
            RuntimeError: The server is already running.
            OSError: The port is taken; stop the other process or choose another port.
        """
        if self._httpd is not None:
            raise RuntimeError(f"the demo server is already running at {self.url}")
        httpd = self._bind(host, port)
        self._thread = threading.Thread(
            target=httpd.serve_forever, name=f"demo-server-{httpd.server_address[1]}", daemon=True
        )
        self._httpd = httpd
        self._thread.start()
        log.info("demo server listening on %s", self.url)
        return self

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:8765`` (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("the demo server is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def reset(self) -> None:
        """Forget every ``/flaky`` key, so each key fails its first N requests again."""
        if self._httpd is not None:
            self._httpd.flaky.reset()

    def stop(self) -> None:
        """Stop serving and free the port; requests in flight are abandoned."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        log.info("demo server stopped")

    def serve_forever(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        """Serve on the calling thread until interrupted (Ctrl-C)."""
        httpd = self._bind(host, port)
        self._httpd = httpd
        log.info("demo server listening on %s (Ctrl-C to stop)", self.url)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt as stop:
            log.info("demo server stopped (%s)", stop.args[0] if stop.args else "Ctrl-C")
        finally:
            self._httpd = None
            httpd.server_close()

    def __enter__(self) -> DemoServer:
        return self if self._httpd is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _bind(host: str, port: int) -> _Server:
        httpd = _Server((host, port), _Handler)
        httpd.flaky = _FlakyCounter()
        httpd.sites = DemoSites()
        return httpd


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo API in the foreground: ``python -m workers.demo_server --port 8765``.

    Returns:
        The process exit code (0 after Ctrl-C or SIGTERM, 1 when the port cannot be bound).
    """
    parser = argparse.ArgumentParser(
        prog="python -m workers.demo_server",
        description="Serve the Mendline demo API (fixture data for the example pipelines).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="(default: %(default)s)")
    parser.add_argument("--log-level", default="INFO", help="log level (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if threading.current_thread() is threading.main_thread():
        # `mendline down` stops background processes with SIGTERM; treat it like Ctrl-C so
        # the socket is closed and the log says why the server stopped.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        DemoServer().serve_forever(args.host, args.port)
    except OSError as exc:
        log.error(
            "cannot listen on %s:%s: %s; stop whatever uses the port or pass another --port",
            args.host,
            args.port,
            exc,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
