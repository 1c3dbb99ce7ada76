"""Background processes started by ``mendline up --detach`` and ``mendline demo``.

Each process has a pid file and a log file in ``<data dir>/run/``; ``mendline down`` stops
them. Nothing here is needed when Mendline runs under a process supervisor or Compose.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BackgroundProcess:
    """A process Mendline started in the background."""

    name: str
    pid: int
    log: Path

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def run_dir(data_dir: Path) -> Path:
    path = data_dir.resolve() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        if "\nState:\tZ" in status:
            return False
    return True


def find(data_dir: Path, name: str) -> BackgroundProcess | None:
    """The live background process called ``name``, if any (stale pid files are removed)."""
    pid_file = run_dir(data_dir) / f"{name}.pid"
    if not pid_file.is_file():
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        pid_file.unlink(missing_ok=True)
        return None
    proc = BackgroundProcess(name, pid, run_dir(data_dir) / f"{name}.log")
    if not proc.alive:
        pid_file.unlink(missing_ok=True)
        return None
    return proc


def start(
    data_dir: Path, name: str, cmd: list[str], env: dict[str, str] | None = None
) -> BackgroundProcess:
    """Start ``cmd`` detached from this terminal, logging to ``<run dir>/<name>.log``."""
    directory = run_dir(data_dir)
    log_path = directory / f"{name}.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    (directory / f"{name}.pid").write_text(str(proc.pid))
    return BackgroundProcess(name, proc.pid, log_path)


def stop(data_dir: Path, name: str, timeout: float = 15.0) -> bool:
    """Stop a background process (SIGTERM, then SIGKILL). False when none was running."""
    proc = find(data_dir, name)
    if proc is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.alive:
        time.sleep(0.1)
    if proc.alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    (run_dir(data_dir) / f"{name}.pid").unlink(missing_ok=True)
    return True
