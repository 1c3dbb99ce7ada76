"""Replay committed histories: a non-deterministic workflow change fails the build.

Histories are recorded by ``python -m tests.support.record_history``. Change workflow code
behind ``workflow.patched(...)`` so these keep replaying.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_committed() -> None:
    assert {p.stem for p in HISTORIES} >= {
        "pipeline_run_basic",
        "pipeline_run_failed",
        "source_onboarding",
        "source_supervisor",
        "doctor_repair",
        "doctor_repair_llm",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
