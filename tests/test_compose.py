"""Static checks of docker-compose.yml and the Dockerfile (no Docker engine needed).

These catch the mistakes that otherwise show up only when someone runs ``docker compose up``
on a fresh machine: a setting renamed in ``models/settings.py`` but not in compose, a worker
command the CLI no longer has, a search attribute registered in the cluster but not in the
embedded server, a floating image tag, a ``depends_on`` pointing at a renamed service.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from models.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

EXPECTED_SERVICES = {
    "postgresql",
    "temporal-schema",
    "temporal",
    "temporal-setup",
    "temporal-ui",
    "mendline-db",
    "migrate",
    "worker",
    "prometheus",
    "grafana",
}

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """Resolve ``${VAR:-default}`` the way compose does with an empty environment."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {key: _interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item) for item in value]
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def services(raw_compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resolved = _interpolate(raw_compose)
    found = resolved.get("services")
    assert isinstance(found, dict), f"{COMPOSE_FILE} has no 'services' mapping"
    return found


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: pair[1] if len(pair) == 2 else "" for pair in pairs}
    return {str(key): str(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def _one_shot_services(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services something waits on to *complete*: setup jobs, not daemons."""
    return {
        name
        for service in services.values()
        for name, condition in _depends_on(service).items()
        if condition == "service_completed_successfully"
    }


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _exec_form(arguments: str) -> list[str]:
    parsed = yaml.safe_load(arguments)
    assert isinstance(parsed, list), f"use the exec (JSON list) form, got {arguments!r}"
    return [str(item) for item in parsed]


def _command_argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _check_cli(argv: list[str]) -> None:
    """Fail unless ``mendline <argv>`` names a real command of the Typer app.

    Runs ``mendline <argv> --help`` in-process: an unknown command, a command group in place
    of a command, or an unknown option fails as it would in the container.
    """
    from workers.cli.main import app  # a missing CLI must fail this test, not skip it

    result = CliRunner().invoke(app, [*argv, "--help"])
    shown = " ".join(argv)
    assert result.exit_code == 0, f"`mendline {shown}` is not a valid command:\n{result.output}"
    usage = next((line for line in result.output.splitlines() if "Usage:" in line), "")
    assert usage.split("[OPTIONS]")[0].split()[-1:] == argv[-1:], (
        f"`mendline {shown}` does not resolve to the command {argv[-1]!r}:\n{result.output}"
    )
    assert "COMMAND" not in usage, f"`mendline {shown}` names a command group, not a command"


def test_every_service_of_the_stack_is_defined(services: dict[str, dict[str, Any]]) -> None:
    missing = EXPECTED_SERVICES - set(services)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image or "build" in service, f"service {name!r} has neither image nor build"
        if image is None:
            continue
        reference = image.split("@", 1)[0]
        repository, _, tag = reference.rpartition(":")
        assert repository and "/" not in tag, f"service {name!r}: image {image!r} has no tag"
        assert tag != "latest", f"service {name!r}: pin {image!r} to a version, not 'latest'"
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "FROM":
            base = arguments.split()[0]
            if base.startswith("--platform"):
                base = arguments.split()[1]
            assert ":" in base and not base.endswith(":latest"), (
                f"Dockerfile: pin the base image {base!r} to a version"
            )


def test_mendline_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    assert prefix == "MENDLINE_"
    known = {f"{prefix}{field}".upper() for field in Settings.model_fields}
    seen = 0
    for name, service in services.items():
        for variable in _environment(service):
            if variable.startswith(prefix):
                seen += 1
                assert variable in known, (
                    f"service {name!r} sets {variable}, which models/settings.py Settings does "
                    f"not read (renamed?); known: {sorted(known)}"
                )
    assert seen, "no service sets any MENDLINE_* variable"


def test_worker_reaches_the_cluster_and_its_database(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "migrate"):
        env = _environment(services[name])
        # model_validate, not Settings(): only compose's values, not this shell's MENDLINE_*.
        settings = Settings.model_validate(
            {
                key.removeprefix("MENDLINE_").lower(): value
                for key, value in env.items()
                if key.startswith("MENDLINE_")
            }
        )
        host, _, port = (settings.temporal_address or "").rpartition(":")
        assert host == "temporal" and port == "7233", (
            f"{name}: MENDLINE_TEMPORAL_ADDRESS must point at the temporal service, "
            f"got {settings.temporal_address!r}"
        )
        assert settings.task_queue == "mendline"
        assert str(settings.data_dir) == "/data"
        url = urlsplit(settings.database_url or "")
        assert url.scheme.startswith("postgresql"), f"{name}: database URL {url.geturl()!r}"
        db_service = services.get(url.hostname or "")
        assert db_service is not None, f"{name}: database host {url.hostname!r} is no service"
        db_env = _environment(db_service)
        assert url.username == db_env.get("POSTGRES_USER"), f"{name}: database user differs"
        assert url.password == db_env.get("POSTGRES_PASSWORD"), f"{name}: password differs"
        assert url.path.lstrip("/") == db_env.get("POSTGRES_DB"), f"{name}: database differs"


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    one_shots = _one_shot_services(services)
    for name, service in services.items():
        if name in one_shots:
            assert service.get("restart", "no") == "no", (
                f"one-shot service {name!r} must not restart, or its dependants never start"
            )
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), (
            f"long-running service {name!r} has no healthcheck"
        )


def test_dependencies_exist_and_can_be_met(services: dict[str, dict[str, Any]]) -> None:
    valid = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name!r} depends on unknown service {target!r}"
            assert condition in valid, f"{name!r}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), (
                    f"{name!r} waits for {target!r} to be healthy, but it has no healthcheck"
                )


def test_worker_scales_with_mendline_workers(raw_compose: dict[str, Any]) -> None:
    worker = raw_compose["services"]["worker"]
    assert worker["deploy"]["replicas"] == "${MENDLINE_WORKERS:-2}"
    assert "container_name" not in worker, "a fixed container name prevents replicas"
    assert not worker.get("ports"), "a published port prevents replicas"
    deps = _depends_on(worker)
    assert deps.get("temporal") == "service_healthy"
    assert deps.get("temporal-setup") == "service_completed_successfully"
    assert deps.get("migrate") == "service_completed_successfully"


def test_built_services_run_real_cli_commands(services: dict[str, dict[str, Any]]) -> None:
    entrypoints = [args for keyword, args in _dockerfile_instructions() if keyword == "ENTRYPOINT"]
    assert entrypoints, "the Dockerfile has no ENTRYPOINT"
    assert _exec_form(entrypoints[-1]) == ["mendline"]
    expected = {"worker": ["worker"], "migrate": ["db", "upgrade"]}
    for name, argv in expected.items():
        assert "build" in services[name], f"service {name!r} must run the image built here"
        assert _command_argv(services[name]) == argv
    for service in services.values():
        if "build" in service:
            _check_cli(_command_argv(service))
    default = [args for keyword, args in _dockerfile_instructions() if keyword == "CMD"]
    if default:
        _check_cli(_exec_form(default[-1]))


def test_dockerfile_installs_existing_extras_as_non_root() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"].get("optional-dependencies", {}))
    instructions = _dockerfile_instructions()
    requested = {
        extra.strip()
        for keyword, args in instructions
        if keyword == "RUN" and "pip" in args
        for group in re.findall(r"(?:\.|mendline)\[([^\]]+)\]", args)
        for extra in group.split(",")
    }
    assert "postgres" in requested, "the image must install the postgres extra (psycopg)"
    assert requested <= extras, f"Dockerfile installs unknown extras {sorted(requested - extras)}"
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image must run as a non-root user"
    for keyword, args in instructions:
        if keyword == "COPY" and "--from" not in args:
            *sources, _destination = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source!r}, which is missing"


def test_search_attributes_match_the_embedded_server(services: dict[str, dict[str, Any]]) -> None:
    from workers.server import SEARCH_ATTRIBUTES

    listed = _environment(services["temporal-setup"])["SEARCH_ATTRIBUTES"].split()
    registered = dict(pair.split("=", 1) for pair in listed)
    assert registered == SEARCH_ATTRIBUTES


def test_mounted_deploy_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        mounts: dict[str, Path] = {}
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name!r} mounts missing {source!r}"
                mounts[target] = ROOT / source
        referenced = [
            *_command_argv(service),
            _environment(service).get("DYNAMIC_CONFIG_FILE_PATH", ""),
        ]
        for argument in referenced:
            for target, directory in mounts.items():
                if argument.startswith(target + "/"):
                    path = directory / argument.removeprefix(target + "/")
                    assert path.is_file(), f"{name!r} refers to {argument!r}; {path} is missing"


# --- monitoring: Prometheus and Grafana -----------------------------------------------------


def _mounted_file(service: dict[str, Any], container_path: str) -> Path:
    """The repository file or directory a service mounts at ``container_path``."""
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith(".") and (
            container_path == target or container_path.startswith(target + "/")
        ):
            return ROOT / source / container_path.removeprefix(target).lstrip("/")
    raise AssertionError(f"nothing from the repository is mounted at {container_path}")


def _flag(service: dict[str, Any], name: str) -> str:
    for argument in _command_argv(service):
        if argument.startswith(f"--{name}="):
            return argument.split("=", 1)[1]
    raise AssertionError(f"the command has no --{name}=…: {_command_argv(service)}")


def test_prometheus_scrapes_every_worker_on_its_metrics_port(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]
    env = _environment(worker)
    port = Settings.model_validate({"metrics_port": env.get("MENDLINE_METRICS_PORT")}).metrics_port
    assert port, "the workers must serve /metrics (MENDLINE_METRICS_PORT is 0 or unset)"
    assert str(port) in [str(p) for p in worker.get("expose", [])], "expose the metrics port"
    assert "/metrics" in " ".join(worker["healthcheck"]["test"]), "health = /metrics answers"

    prometheus = services["prometheus"]
    config_path = _mounted_file(prometheus, _flag(prometheus, "config.file"))
    config = yaml.safe_load(config_path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [
        (name, sd["port"], job.get("metrics_path", "/metrics"))
        for job in jobs.values()
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    ]
    # Docker's DNS answers a service name with every replica: one DNS name finds them all.
    assert ("worker", port, "/metrics") in targets, f"{config_path} does not scrape the workers"
    for name, _, _ in targets:
        assert name in services, f"{config_path} scrapes {name!r}, which is no compose service"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    from tests.support.dashboards import DASHBOARDS, load_dashboards, panels

    grafana = services["grafana"]
    assert _depends_on(grafana).get("prometheus") == "service_healthy"
    provisioning = _mounted_file(grafana, "/etc/grafana/provisioning")
    sources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.yml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus"
    url = urlsplit(sources[0]["url"])
    assert url.hostname == "prometheus" and url.port == 9090, sources[0]["url"]
    assert any(str(p).endswith(":9090") for p in services["prometheus"].get("ports", []))
    uid = sources[0]["uid"]

    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.yml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert providers, "no dashboard provider is provisioned"
    for provider in providers:
        folder = _mounted_file(grafana, provider["options"]["path"])
        assert folder.resolve() == DASHBOARDS.resolve(), f"provider reads {folder}"
    home = _environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    assert _mounted_file(grafana, home).is_file(), f"home dashboard {home} is not mounted"

    for file, dashboard in load_dashboards().items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{file}: panel ids repeat"
        for panel in panels(dashboard):
            assert panel["datasource"]["uid"] == uid, f"{file}: {panel['title']!r} data source"
            assert panel.get("targets"), f"{file}: {panel['title']!r} has no query"


def test_dashboard_queries_name_metrics_that_exist() -> None:
    from activities.metrics import MENDLINE_REGISTRY
    from tests.support.dashboards import load_dashboards, metric_names, queries

    mendline: set[str] = set()
    for family in MENDLINE_REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        mendline.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
    used: set[str] = set()
    for file, dashboard in load_dashboards().items():
        for where, expr in queries(dashboard):
            names = metric_names(expr)
            assert names, f"{file} {where}: no Mendline or Temporal metric in {expr!r}"
            unknown = {n for n in names if n.startswith("mendline_")} - mendline
            assert not unknown, f"{file} {where}: {sorted(unknown)} are not Mendline metrics"
            used |= names
    # Every Mendline metric has a panel, and so does the Temporal SDK. The SDK's names are
    # checked against a real worker's /metrics in tests/test_metrics.py.
    families = {name.removesuffix("_total").removesuffix("_bucket") for name in used}
    missing = {family.name for family in MENDLINE_REGISTRY.collect()} - families
    assert not missing, f"no dashboard panel shows {sorted(missing)}"
    assert any(name.startswith("temporal_") for name in used)
