"""Errors of the scraper runtime, the scout and the sandbox.

Standard library only: ``scrapers.render`` copies this module into generated scrapers.

Hierarchy::

    ScraperError
    ├── SpecError                  the spec cannot run (bad CSS selector, bad JSON path)
    ├── DocumentError              the page cannot be processed
    │   ├── DocumentTooLargeError
    │   └── DocumentTooComplexError  (nested deeper than the runtime accepts)
    ├── ScoutError                 the scout could not build a blueprint
    │   ├── ExampleNotFoundError   an example value is not on its seed page
    │   ├── SelectorNotFoundError  the value is there but no rule finds it on every page
    │   └── NoRecordsFoundError    no repeated record structure
    └── SandboxError               isolated extraction did not finish
        ├── SandboxTimeoutError
        ├── SandboxMemoryError
        └── SandboxCrashError
"""

from __future__ import annotations

from collections.abc import Sequence


class ScraperError(Exception):
    """Base of every error raised by ``scrapers``."""


class SpecError(ScraperError):
    """A spec cannot run: a selector or JSON path is invalid.

    Attributes:
        field: The field whose locator is wrong (``None`` for the container or pagination).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DocumentError(ScraperError):
    """A page cannot be processed.

    Attributes:
        url: The page.
    """

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class DocumentTooLargeError(DocumentError):
    """The page is larger than the runtime accepts."""


class DocumentTooComplexError(DocumentError):
    """The page nests elements deeper than the runtime accepts."""


class ScoutError(ScraperError):
    """The scout could not turn the pages (and examples) into a blueprint."""


class ExampleNotFoundError(ScoutError):
    """An example value does not occur on its seed page.

    Attributes:
        field: The example's field name.
        value: The value that was looked for.
        url: The seed page.
    """

    def __init__(self, field: str, value: str, url: str) -> None:
        super().__init__(
            f"example value {value!r} of field {field!r} was not found on {url}; check the "
            f"value is shown on that page (not only in scripts) and copy it exactly as printed"
        )
        self.field = field
        self.value = value
        self.url = url


class SelectorNotFoundError(ScoutError):
    """Example values were found but no single rule reproduces them on every seed page.

    Attributes:
        field: The field concerned.
        tried: Short descriptions of the rules that were tried and why they failed.
    """

    def __init__(self, field: str, tried: Sequence[str]) -> None:
        shown = "; ".join(tried[:8]) or "no candidate"
        super().__init__(
            f"no selector finds the example values of field {field!r} on every seed page "
            f"(tried: {shown}); give examples from pages of the same layout, or fewer pages"
        )
        self.field = field
        self.tried = list(tried)


class NoRecordsFoundError(ScoutError):
    """No repeated record structure (nor data in JSON) was found.

    Attributes:
        tried: What was looked at, for the user and the logs.
    """

    def __init__(self, tried: Sequence[str]) -> None:
        shown = "; ".join(tried) or "nothing"
        super().__init__(
            f"no repeated records found on the pages (tried: {shown}); give example values, "
            f"or check that the data is not drawn by scripts (render=True)"
        )
        self.tried = list(tried)


class SandboxError(ScraperError):
    """Extraction in the sandbox process did not finish."""


class SandboxTimeoutError(SandboxError):
    """The sandboxed extraction ran past its wall-time limit."""


class SandboxMemoryError(SandboxError):
    """The sandboxed extraction ran out of its memory limit."""


class SandboxCrashError(SandboxError):
    """The sandbox process died or failed for another reason."""
