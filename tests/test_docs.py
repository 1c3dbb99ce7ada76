"""Documentation stays true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from models.settings import Settings
from workers.cli.ops import tasks_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_task_reference_matches_the_handlers() -> None:
    current = (ROOT / "docs" / "tasks.md").read_text(encoding="utf-8")
    assert current == tasks_markdown(), "regenerate with: mendline tasks --markdown > docs/tasks.md"


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(MENDLINE_[A-Z_]+)`", readme))
    fields = {f"MENDLINE_{name.upper()}" for name in Settings.model_fields}
    assert fields <= documented, (
        f"settings missing from the README table: {sorted(fields - documented)}"
    )
