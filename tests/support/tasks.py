"""Functions called by ``python`` tasks in tests."""

from __future__ import annotations

from typing import Any


def make_rows(count: int, width: int = 100) -> dict[str, Any]:
    """Return ``count`` records of roughly ``width`` characters each."""
    return {"rows": [{"id": i, "text": "x" * width} for i in range(count)]}
