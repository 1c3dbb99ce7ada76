"""The remediation agents' errors.

Hierarchy::

    AgentError
    ├── RunbookError           a runbook file is malformed (path and problem)
    ├── ProviderError          a call to a language model failed (provider, what happened)
    │   ├── ProviderConfigError    the provider's settings are incomplete or wrong
    │   └── ProviderTimeoutError   no answer within ``MENDLINE_LLM_TIMEOUT``
    └── PlanValidationError    an answer breaks the plan contract (the problems, one each)

:func:`activities.agent.plan` never lets a ``ProviderError`` or ``PlanValidationError``
escape: both end in the heuristic plan, with the reason recorded in the outcome.
"""

from __future__ import annotations

from pathlib import Path


class AgentError(Exception):
    """Base of the agents' errors."""


class RunbookError(AgentError):
    """A runbook cannot be read: the message names the file and what to fix."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"runbook {path}: {problem}")


class ProviderError(AgentError):
    """A language-model call failed.

    Attributes:
        provider: ``openai`` or ``ollama``.
        detail: What happened, for the audit.
    """

    def __init__(self, provider: str, detail: str) -> None:
        self.provider = provider
        self.detail = detail
        super().__init__(f"{provider}: {detail}")


class ProviderConfigError(ProviderError):
    """The provider cannot be built from the settings (the message names the setting)."""


class ProviderTimeoutError(ProviderError):
    """The provider did not answer in time."""


class PlanValidationError(AgentError):
    """An answer is not a valid plan.

    Attributes:
        problems: Every problem found, one sentence each (sent back to the model on re-ask).
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))
