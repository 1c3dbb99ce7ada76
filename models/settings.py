"""Mendline's one settings class (environment prefix ``MENDLINE_``).

Only processes in ``workers/`` instantiate :class:`Settings`; activities receive it through
their constructor and workflows never see it (anything a workflow branches on arrives
through its input or an activity result, so it is in history).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process configuration, read from ``MENDLINE_*`` environment variables.

    Attributes:
        data_dir: Where the embedded server's history, the SQLite database and logs live.
        temporal_address: ``host:port`` of an external Temporal frontend. Unset means the
            embedded dev server started by ``mendline server`` / ``mendline up``.
        temporal_namespace: Temporal namespace for every client and worker.
        task_queue: Task queue the worker polls and the CLI starts workflows on.
        database_url: SQLAlchemy URL of Mendline's database. Unset means SQLite in
            ``data_dir``.
        embedded_port: gRPC port of the embedded server.
        ui_port: Web UI port of the embedded server.
        max_parallel: Default bound on concurrently running tasks of one pipeline run.
        large_output_bytes: Task outputs larger than this (as JSON) are stored in the
            database and passed downstream by reference, keeping history payloads small.
        max_concurrent_activities: Worker slots for regular activities.
        max_concurrent_local_activities: Worker slots for local activities.
        log_level: Python logging level of worker and CLI.
        allow_private_networks: Let scrapers fetch private, loopback and link-local
            addresses (off by default: a guard against SSRF). The demo and tests turn it on.
        allowed_hosts: Hosts or CIDR ranges fetchable even when private networks are not
            allowed, comma-separated (e.g. ``127.0.0.1,10.1.0.0/16,intranet.example``).
        user_agent: User-Agent sent by scrapers.
        fetch_max_bytes: Largest response body a fetch accepts.
        fetch_timeout: Seconds for one fetch (connect + read).
        host_rate_limit: Most requests per second to one host, per worker.
        respect_robots: Honour robots.txt (a source may opt out).
        chromium_path: Browser used for pages that need rendering (Playwright).
    """

    model_config = SettingsConfigDict(env_prefix="MENDLINE_", extra="ignore")

    data_dir: Path = Path(".mendline")
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = "mendline"
    database_url: str | None = None
    embedded_port: int = Field(7233, ge=1, le=65535)
    ui_port: int = Field(8233, ge=1, le=65535)
    max_parallel: int = Field(16, ge=1, le=1000)
    large_output_bytes: int = Field(64 * 1024, ge=1024)
    max_concurrent_activities: int = Field(100, ge=1)
    max_concurrent_local_activities: int = Field(200, ge=1)
    log_level: str = "INFO"
    allow_private_networks: bool = False
    allowed_hosts: str = ""
    user_agent: str = "MendlineBot/0.1 (+https://github.com/mendline/mendline)"
    fetch_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    fetch_timeout: float = Field(20.0, gt=0)
    host_rate_limit: float = Field(2.0, gt=0)
    respect_robots: bool = True
    chromium_path: str = "/usr/bin/chromium"

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, else SQLite in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mendline.db').resolve()}"

    @property
    def embedded(self) -> bool:
        """True when Mendline runs its own dev server (no external address configured)."""
        return not self.temporal_address

    @property
    def resolved_temporal_address(self) -> str:
        """The frontend address clients connect to."""
        return self.temporal_address or f"127.0.0.1:{self.embedded_port}"
