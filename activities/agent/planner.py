"""The planning loop: retrieve, ask, validate, re-ask once, else replace by the heuristic."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from activities.agent.diagnosis import http_status
from activities.agent.errors import PlanValidationError, ProviderError, RunbookError
from activities.agent.heuristic import recommend
from activities.agent.prompt import ANSWER_CHARS, build_messages, estimate_tokens, reask_messages
from activities.agent.providers import ChatRequest, Provider, provider_for
from activities.agent.redaction import redact, redact_value
from activities.agent.retrieval import Query, Retrieved, load_runbooks, retrieve
from activities.agent.validation import parse_plan
from activities.incidents_store import IncidentStore
from models.incidents import Incident
from models.remediation import (
    FailureContext,
    Features,
    PlanAttempt,
    PlanOutcome,
    Prediction,
    RemediationPlan,
)
from models.settings import Settings

log = logging.getLogger(__name__)

INCIDENT_LIMIT = 200
"""Past incidents (newest first) considered for retrieval."""
MAX_ANSWER_TOKENS = 1024
MIN_ANSWER_TOKENS = 200
"""An ask is only made if the budget leaves room for at least this long an answer."""


def redact_context(context: FailureContext) -> FailureContext:
    """The failure with its message and parameters redacted (what prompts may carry)."""
    return context.model_copy(
        update={
            "message": redact(context.message),
            "params": redact_value(context.params),
            "error_type": redact(context.error_type),
        }
    )


def _redact_incident(incident: Incident) -> Incident:
    return incident.model_copy(
        update={
            "summary": redact(incident.summary),
            "resolution": redact(incident.resolution) if incident.resolution else None,
            "labels": {k: redact(v) for k, v in incident.labels.items()},
        }
    )


def _query(context: FailureContext) -> Query:
    text = " ".join(
        part
        for part in (
            context.error_type,
            context.error_class or "",
            context.task_type or "",
            context.message,
        )
        if part
    )
    labels = tuple(
        label
        for label in (
            context.pipeline,
            context.task,
            f"{context.pipeline}/{context.task}" if context.pipeline and context.task else None,
            context.source,
        )
        if label
    )
    return Query(
        text=text,
        error_class=context.error_class,
        error_type=context.error_type,
        status=http_status(context.message),
        labels=labels,
    )


async def gather_evidence(
    context: FailureContext, settings: Settings, incidents: IncidentStore | None
) -> Retrieved:
    """Runbooks and past incidents for a (redacted) failure; a broken runbook directory or
    incident store is logged and planning goes on without it."""
    try:
        runbooks = load_runbooks(settings.runbooks)
    except (RunbookError, OSError) as exc:
        log.error("remediation agents: runbooks unavailable, planning without them: %s", exc)
        runbooks = []
    past: list[Incident] = []
    if incidents is not None:
        try:
            past = await asyncio.to_thread(incidents.incidents, limit=INCIDENT_LIMIT)
        except Exception as exc:  # the database is optional evidence, never a blocker
            log.error("remediation agents: past incidents unavailable: %s", exc)
    return retrieve(_query(context), runbooks, [_redact_incident(i) for i in past])


def _attempt(provider: Provider, **values: Any) -> PlanAttempt:
    raw = values.pop("raw", "")
    return PlanAttempt(provider=provider.name, raw=raw[:ANSWER_CHARS], **values)


async def plan(
    context: FailureContext,
    features: Features,
    prediction: Prediction,
    settings: Settings,
    incidents: IncidentStore | None = None,
    *,
    provider: Provider | None = None,
    spent_tokens: int = 0,
) -> PlanOutcome:
    """A remediation plan for a failure, and how it was obtained.

    Steps: redact the failure; retrieve runbooks and past incidents (TF-IDF); compute the
    heuristic plan (always, as the fallback); if a language model is configured, ask it
    with the redacted, quoted data, validate its answer against the contract and the
    allowlist, re-ask once with the problems, and replace it by the heuristic plan if it
    is still invalid, the call fails or times out, or the token budget runs out. Every call
    is recorded in ``PlanOutcome.attempts`` with its token usage; ``replaced`` says why a
    replacement happened.

    Args:
        context: What failed (unredacted; redaction happens here).
        features: Telemetry features of the failure.
        prediction: The failure predictor's output.
        settings: ``MENDLINE_AGENT_PROVIDER``, ``MENDLINE_LLM_*``, ``MENDLINE_RUNBOOKS``.
        incidents: Past incidents to retrieve from (None: runbooks only).
        provider: A provider to use instead of building one from the settings (the caller
            keeps ownership and closes it).
        spent_tokens: Tokens this incident already spent (an earlier attempt of the calling
            activity), counted against ``MENDLINE_LLM_TOKEN_BUDGET``.

    Returns:
        The plan to judge. Never raises for a provider's failure: the heuristic plan stands in.
    """
    safe = redact_context(context)
    retrieved = await gather_evidence(safe, settings, incidents)
    fallback = recommend(safe, features, prediction, retrieved)
    outcome = PlanOutcome(
        plan=fallback,
        provider="heuristic",
        runbooks=retrieved.runbook_ids,
        incidents=retrieved.incident_ids,
    )
    owned = provider is None
    if provider is None:
        try:
            provider = provider_for(settings)
        except ProviderError as exc:
            log.warning("remediation agents: %s; using the heuristic plan", exc)
            outcome.replaced = f"{exc.provider} is not configured: {exc.detail}"
            return outcome
    try:
        return await _ask(
            provider, safe, features, prediction, settings, retrieved, outcome, spent_tokens
        )
    finally:
        if owned:
            await provider.aclose()


async def _ask(
    provider: Provider,
    context: FailureContext,
    features: Features,
    prediction: Prediction,
    settings: Settings,
    retrieved: Retrieved,
    outcome: PlanOutcome,
    spent_tokens: int,
) -> PlanOutcome:
    messages = (
        build_messages(context, features, prediction, retrieved) if provider.uses_tokens else []
    )
    budget = settings.llm_token_budget
    used = spent_tokens
    attempts: list[PlanAttempt] = []
    replaced: str | None = None
    plan_found: RemediationPlan | None = None
    for round_ in (1, 2):
        max_tokens = MAX_ANSWER_TOKENS
        if provider.uses_tokens:
            needed = estimate_tokens(messages)
            left = budget - used
            if needed + MIN_ANSWER_TOKENS > left:
                what = "the first ask" if round_ == 1 else "a re-ask"
                replaced = (
                    f"token budget of {budget} for this incident exhausted: {used} used, "
                    f"{what} needs about {needed + MIN_ANSWER_TOKENS}"
                )
                break
            max_tokens = min(MAX_ANSWER_TOKENS, left - needed)
        request = ChatRequest(
            messages=messages,
            max_tokens=max_tokens,
            context=context,
            features=features,
            prediction=prediction,
            retrieved=retrieved,
        )
        try:
            completion = await provider.complete(request)
        except ProviderError as exc:
            attempts.append(_attempt(provider, model=provider.model, ok=False, error=exc.detail))
            replaced = f"{provider.name} failed: {exc.detail}"
            break
        used += completion.prompt_tokens + completion.completion_tokens
        tokens = {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        }
        model = completion.model or provider.model
        try:
            plan_found = parse_plan(
                completion.text, runbooks=retrieved.runbook_ids, incidents=retrieved.incident_ids
            )
        except PlanValidationError as exc:
            attempts.append(
                _attempt(
                    provider, model=model, ok=False, error=str(exc), raw=completion.text, **tokens
                )
            )
            if not provider.uses_tokens:  # the heuristic is deterministic: asking again is moot
                raise
            if round_ == 1:
                messages = reask_messages(messages, completion.text, exc.problems)
                continue
            replaced = f"{provider.name} answered an invalid plan twice: {exc}"
            break
        attempts.append(
            _attempt(
                provider,
                model=model,
                ok=True,
                raw=completion.text if provider.uses_tokens else "",
                **tokens,
            )
        )
        break

    outcome.attempts = attempts
    if plan_found is not None:
        outcome.plan = plan_found
        outcome.provider = provider.name
        return outcome
    log.warning("remediation agents: %s; using the heuristic plan", replaced)
    outcome.replaced = replaced
    return outcome
