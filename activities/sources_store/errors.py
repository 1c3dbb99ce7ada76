"""The errors of :class:`~activities.sources_store.SourceStore` and the views it returns.

Errors::

    SourceStoreError
    ├── SourceExistsError       a live source already has the name
    ├── SourceNotFoundError     no such source (or it was removed)
    ├── VersionNotFoundError    no such scraper version
    └── PageNotFoundError       no such bronze page

Each has a ``type_name`` so activities can raise it as a non-retryable ``ApplicationError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from models.sources import SourceConfig, SourceStatus

# --- errors ------------------------------------------------------------------------------------


class SourceStoreError(Exception):
    """Base of the errors of :class:`SourceStore`."""

    type_name: ClassVar[str] = "SourceStoreError"


class SourceExistsError(SourceStoreError):
    """A source that is not removed already has this name."""

    type_name: ClassVar[str] = "SourceExistsError"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a source named {name!r} already exists; pick another name, or remove it first "
            f"with `mendline source remove {name}`"
        )


class SourceNotFoundError(SourceStoreError):
    """No source has this name, or it was removed."""

    type_name: ClassVar[str] = "SourceNotFoundError"

    def __init__(self, name: str, close: Sequence[str] = (), *, removed: bool = False) -> None:
        self.name = name
        self.close = list(close)
        self.removed = removed
        if removed:
            hint = "it was removed; add it again with `mendline source add` to revive it"
        elif self.close:
            hint = "did you mean " + ", ".join(repr(n) for n in self.close) + "?"
        else:
            hint = "`mendline source list` shows the sources"
        super().__init__(f"no source named {name!r}: {hint}")


class VersionNotFoundError(SourceStoreError):
    """The source has no scraper version with this number."""

    type_name: ClassVar[str] = "VersionNotFoundError"

    def __init__(self, source: str, version: int, available: Sequence[int] = ()) -> None:
        self.source = source
        self.version = version
        self.available = list(available)
        known = ", ".join(map(str, self.available)) if self.available else "none yet"
        super().__init__(
            f"source {source!r} has no scraper version {version} (versions: {known}); "
            f"`mendline source versions {source}` lists them"
        )


class PageNotFoundError(SourceStoreError):
    """No bronze page has this id."""

    type_name: ClassVar[str] = "PageNotFoundError"

    def __init__(self, bronze_id: int) -> None:
        self.bronze_id = bronze_id
        super().__init__(f"no bronze page with id {bronze_id} is stored")


# --- views -------------------------------------------------------------------------------------


class SourceRecord(BaseModel):
    """A stored source as callers see it."""

    name: str
    url: str
    config: SourceConfig
    status: SourceStatus
    active_version: int | None = None
    created_at: datetime
    updated_at: datetime
    removed_at: datetime | None = None


class SourceEvent(BaseModel):
    """One entry of a source's history."""

    source: str
    at: datetime
    kind: str
    detail: dict[str, Any]
