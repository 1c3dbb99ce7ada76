# syntax=docker/dockerfile:1
# Mendline worker / CLI image. Used by docker-compose.yml for the `worker` and `migrate`
# services; any `mendline` subcommand runs as `docker run mendline:local <command>`.

# --- build: turn the source tree into wheels (Mendline and every dependency) -------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY activities ./activities
COPY workflows ./workflows
COPY workers ./workers
COPY scrapers ./scrapers
COPY migrations ./migrations
# The postgres extra brings psycopg; keep it in step with the extras in pyproject.toml
# (tests/test_compose.py checks that it exists).
RUN pip wheel --wheel-dir /wheels ".[postgres]"

# --- runtime: only the installed wheels, run as an unprivileged user ---------------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MENDLINE_DATA_DIR=/data

RUN useradd --create-home --uid 10001 --user-group mendline \
    && mkdir -p /data \
    && chown mendline:mendline /data

RUN --mount=from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "mendline[postgres]"

# Runbooks the agents cite, and the default alert rules and remediation policy (mount your
# own over them, or point MENDLINE_ALERT_RULES / MENDLINE_POLICY elsewhere).
COPY runbooks /opt/mendline/runbooks
COPY examples/alerts.yaml examples/policy.yaml /opt/mendline/
ENV MENDLINE_RUNBOOKS=/opt/mendline/runbooks \
    MENDLINE_ALERT_RULES=/opt/mendline/alerts.yaml \
    MENDLINE_POLICY=/opt/mendline/policy.yaml

USER mendline
WORKDIR /home/mendline
# /data is MENDLINE_DATA_DIR; a fresh named volume mounted there copies this directory's
# ownership, so the unprivileged user can write to it.

ENTRYPOINT ["mendline"]
CMD ["worker"]
