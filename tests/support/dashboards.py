"""Read the Grafana dashboards in monitoring/ and the metric names their queries use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"

# Mendline's and the Temporal SDK's metric names; PromQL functions, keywords and label
# names never start with these prefixes.
_METRIC = re.compile(r"\b(?:mendline|temporal)_[A-Za-z0-9_]+")


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON file, by file name."""
    found = {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}
    assert found, f"no dashboards in {DASHBOARDS}"
    return found


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """All panels, those nested in collapsed rows included (rows themselves excluded)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r}", str(target.get("expr", ""))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            yield f"variable {variable.get('name')!r}", text


def metric_names(expr: str) -> set[str]:
    """The ``mendline_*`` and ``temporal_*`` metric names a PromQL expression reads."""
    return set(_METRIC.findall(expr))
