"""Remediation agents: who proposes what to do about a failure.

The entry point the ``plan_remediation`` activity calls::

    async def plan(
        context: FailureContext,
        features: Features,
        prediction: Prediction,
        settings: Settings,
        incidents: IncidentStore | None = None,
        *,
        provider: Provider | None = None,
        spent_tokens: int = 0,
    ) -> PlanOutcome

It redacts the failure (:mod:`~activities.agent.redaction`), retrieves runbooks and past
incidents (:mod:`~activities.agent.retrieval`), computes the heuristic plan
(:mod:`~activities.agent.heuristic`), and — when ``MENDLINE_AGENT_PROVIDER`` names a
language model — asks it (:mod:`~activities.agent.providers`,
:mod:`~activities.agent.prompt`), validates the answer (:mod:`~activities.agent.validation`),
re-asks once with the problems, and falls back to the heuristic plan, recording why.
It never executes anything and never raises for a provider's failure.

:func:`provider_for` builds the configured provider (``heuristic``, ``openai``, ``ollama``).
"""

from activities.agent.errors import (
    AgentError,
    PlanValidationError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    RunbookError,
)
from activities.agent.heuristic import ACTION_RISK, recommend
from activities.agent.planner import plan, redact_context
from activities.agent.providers import (
    ChatRequest,
    Completion,
    HeuristicProvider,
    OllamaProvider,
    OpenAIProvider,
    Provider,
    provider_for,
)
from activities.agent.redaction import redact, redact_value
from activities.agent.retrieval import Runbook, load_runbooks, retrieve
from activities.agent.validation import parse_plan

__all__ = [
    "ACTION_RISK",
    "AgentError",
    "ChatRequest",
    "Completion",
    "HeuristicProvider",
    "OllamaProvider",
    "OpenAIProvider",
    "PlanValidationError",
    "Provider",
    "ProviderConfigError",
    "ProviderError",
    "ProviderTimeoutError",
    "Runbook",
    "RunbookError",
    "load_runbooks",
    "parse_plan",
    "plan",
    "provider_for",
    "recommend",
    "redact",
    "redact_context",
    "redact_value",
    "retrieve",
]
