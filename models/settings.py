"""Mendline's one settings class (environment prefix ``MENDLINE_``).

Only processes in ``workers/`` instantiate :class:`Settings`; activities receive it through
their constructor and workflows never see it (anything a workflow branches on arrives
through its input or an activity result, so it is in history).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
        max_cached_workflows: Workflows a worker keeps in memory between their tasks (every
            source's supervisor is one); an evicted one is replayed from its history on its
            next task. Raise it above the number of sources one worker supervises.
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
        max_strikes: Bad runs in a row that quarantine a supervised source.
        max_repairs_per_day: Repair attempts per source per UTC day (the circuit breaker).
        dead_after_days: Consecutive days of exhausted, failed repairs that make a source DEAD.
        outage_window: Seconds a source's site may be unreachable before it is quarantined.
        metrics_port: Port of the worker's Prometheus ``/metrics`` endpoint (Mendline's
            metrics and the Temporal SDK's). 0 turns metrics off.
        otlp_endpoint: OpenTelemetry collector (OTLP/HTTP) that receives traces of
            workflows and activities, e.g. ``http://otel-collector:4318``. Unset: no export.
        trace_console: Print every finished span to standard error (local debugging).
        alert_rules: The alert rules file (YAML) the Monitor evaluates and ``mendline alerts``
            reads; relative paths are relative to the working directory.
        smtp_host: SMTP server of ``email`` notifiers.
        smtp_port: Its port.
        smtp_from: Sender address of alert mails.
        smtp_username: Login for the SMTP server (unset: no login).
        smtp_password: Password for ``smtp_username``.
        smtp_starttls: Upgrade the SMTP connection with STARTTLS before sending.
        agent_provider: Who writes remediation plans: ``heuristic`` (the deterministic
            playbook recommender, no network), ``openai`` (any OpenAI-compatible endpoint)
            or ``ollama``. A language model's invalid or failed answer is replaced by the
            heuristic plan. With a language model, the scraper doctor also asks it for a
            patch when its own re-anchoring patch fails.
        llm_base_url: The language model's endpoint: an OpenAI-compatible ``…/v1`` URL, or
            the Ollama server (unset: OpenAI's API, or ``http://127.0.0.1:11434``).
        llm_model: The model to ask (required for ``openai`` and ``ollama``).
        llm_api_key: The endpoint's API key (unset: none is sent).
        llm_response_format: How the answer is constrained to the plan's JSON schema:
            ``json_schema`` (OpenAI structured outputs) or ``json_object_schema``
            (llama.cpp's server: ``{"type": "json_object", "schema": …}``).
        llm_timeout: Seconds for one language-model call (a plan makes at most two).
        llm_token_budget: Most tokens (prompt + answer, all calls) one remediation, or one
            scraper repair, may spend on the language model; past it the heuristic plan is
            used (a repair asks no more).
        runbooks: The runbooks directory agents retrieve from (unset: Mendline's
            ``runbooks/``).
        remediation: What a pipeline task that fails for good starts: ``on`` (a
            ``Remediation``), ``dry-run`` (one that only says what it would do) or ``off``.
        remediation_notifiers: Notifiers (names from the alert rules file) that remediation
            alerts and escalations go to, comma-separated, besides the log.
        policy: The remediation policy file (YAML): which actions may run alone and which
            need whose approval, per environment; relative paths are relative to the working
            directory.
        environment: The environment this deployment is (``production``, ``staging``…):
            the policy file's overrides for it apply.
        approval_secret: HMAC key of approval tokens. Set: an approval must carry the token
            ``mendline approvals approve`` computes from it. Unset: no token is needed.
        audit_log: The audit log's JSONL mirror (unset: ``audit.jsonl`` in ``data_dir``).
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
    max_cached_workflows: int = Field(2000, ge=0)
    log_level: str = "INFO"
    allow_private_networks: bool = False
    allowed_hosts: str = ""
    user_agent: str = "MendlineBot/0.1 (+https://github.com/mendline/mendline)"
    fetch_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    fetch_timeout: float = Field(20.0, gt=0)
    host_rate_limit: float = Field(2.0, gt=0)
    respect_robots: bool = True
    chromium_path: str = "/usr/bin/chromium"
    max_strikes: int = Field(3, ge=1, le=100)
    max_repairs_per_day: int = Field(3, ge=1, le=100)
    dead_after_days: int = Field(3, ge=1, le=365)
    outage_window: float = Field(86400.0, gt=0)
    metrics_port: int = Field(9464, ge=0, le=65535)
    otlp_endpoint: str | None = None
    trace_console: bool = False
    alert_rules: Path = Path("examples/alerts.yaml")
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "mendline@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    agent_provider: Literal["heuristic", "openai", "ollama"] = "heuristic"
    llm_base_url: str | None = None
    llm_model: str = ""
    llm_api_key: SecretStr | None = None
    llm_response_format: Literal["json_schema", "json_object_schema"] = "json_schema"
    llm_timeout: float = Field(30.0, gt=0)
    llm_token_budget: int = Field(8000, ge=0)
    runbooks: Path | None = None
    policy: Path = Path("examples/policy.yaml")
    approval_secret: SecretStr | None = None
    audit_log: Path | None = None
    remediation: Literal["on", "off", "dry-run"] = "on"
    environment: str = "production"
    remediation_notifiers: str = ""

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, else SQLite in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mendline.db').resolve()}"

    @property
    def remediation_notifier_names(self) -> list[str]:
        """``remediation_notifiers`` as a list."""
        return [name.strip() for name in self.remediation_notifiers.split(",") if name.strip()]

    @property
    def resolved_audit_log(self) -> Path:
        """The audit log's JSONL mirror in force: the configured path, else in ``data_dir``."""
        return self.audit_log or self.data_dir / "audit.jsonl"

    @property
    def embedded(self) -> bool:
        """True when Mendline runs its own dev server (no external address configured)."""
        return not self.temporal_address

    @property
    def resolved_temporal_address(self) -> str:
        """The frontend address clients connect to."""
        return self.temporal_address or f"127.0.0.1:{self.embedded_port}"
