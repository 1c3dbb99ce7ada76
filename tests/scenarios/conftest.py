"""The labelled scenarios, loaded once, and the accuracy line in pytest's summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.remediation import FailureContext, Features, Prediction, RemediationAction

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Scenario:
    """One labelled failure."""

    file: str
    id: str
    category: str
    expected: RemediationAction
    why: str
    failure: FailureContext
    features: Features
    prediction: Prediction
    expect_parameters: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.category}/{self.id}"


def load_scenarios() -> list[Scenario]:
    """Every scenario of every ``*.yaml`` file here (ids unique within the suite)."""
    scenarios: list[Scenario] = []
    for path in sorted(HERE.glob("*.yaml")):
        data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        for item in data["scenarios"]:
            scenarios.append(
                Scenario(
                    file=path.name,
                    id=item["id"],
                    category=data["category"],
                    expected=RemediationAction(item["expected"]),
                    why=item["why"],
                    failure=FailureContext.model_validate(item["failure"]),
                    features=Features.model_validate(item.get("features", {})),
                    prediction=Prediction(
                        model="scenario", version=1, sha256="0" * 64, risk=item["risk"]
                    ),
                    expect_parameters={
                        name: (float(bounds[0]), float(bounds[1]))
                        for name, bounds in item.get("expect_parameters", {}).items()
                    },
                )
            )
    keys = [s.key for s in scenarios]
    assert len(keys) == len(set(keys)), "scenario ids must be unique per category"
    return scenarios


SCENARIOS = load_scenarios()
_accuracy: list[str] = []


def record_accuracy(line: str) -> None:
    """Remember a line for the terminal summary (shown without ``-s``)."""
    _accuracy.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _accuracy:
        terminalreporter.section("remediation scenarios")
        for line in _accuracy:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def scenarios() -> list[Scenario]:
    return SCENARIOS
