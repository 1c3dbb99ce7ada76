"""The agents behind one interface: ``heuristic``, ``openai`` and ``ollama``.

Every :class:`Provider` answers a :class:`ChatRequest` with a :class:`Completion` — the
answer's text and its token usage — and :func:`activities.agent.plan` validates every
answer the same way. The heuristic answers with its deterministic plan as JSON and costs
no tokens; the two language-model providers send the request's messages:

* ``openai``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM,
  llama.cpp's server…) through ``openai.AsyncOpenAI(base_url=…)``. The answer is
  constrained by ``MENDLINE_LLM_RESPONSE_FORMAT``: ``json_schema`` sends OpenAI's
  ``{"type": "json_schema", "json_schema": {"name": "RemediationPlan", "schema": …,
  "strict": true}}``; ``json_object_schema`` sends llama.cpp's ``{"type": "json_object",
  "schema": …}`` (its server refuses the former and turns the latter into a grammar).
* ``ollama``: the native ``ollama.AsyncClient(host=…)`` with ``format=<schema>``.

Client-side retries are off (``max_retries=0``; Ollama's client has none): Temporal owns
retries, and a failed call ends in the heuristic plan rather than in a retry storm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

import httpx
import ollama
import openai

from activities.agent.errors import ProviderConfigError, ProviderError, ProviderTimeoutError
from activities.agent.heuristic import MODEL as HEURISTIC_MODEL
from activities.agent.heuristic import recommend
from activities.agent.prompt import ChatMessage, plan_schema
from activities.agent.retrieval import Retrieved
from models.remediation import FailureContext, Features, Prediction
from models.settings import Settings

ProviderName = Literal["heuristic", "openai", "ollama"]
ResponseFormat = Literal["json_schema", "json_object_schema"]
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
ERROR_CHARS = 300


@dataclass
class ChatRequest:
    """One ask.

    Attributes:
        messages: The conversation (system, data, and on a re-ask the rejected answer).
        max_tokens: Most tokens the answer may use.
        context: The failure, redacted (the heuristic reads it instead of the messages).
        features: Telemetry features.
        prediction: The failure predictor's output.
        retrieved: Runbooks and incidents retrieved (the schema lets the answer cite them).
        json_schema: The answer's schema when it is not a remediation plan (the doctor's
            scraper patches); None: the plan schema for ``retrieved``.
        schema_name: The name sent with ``json_schema``.
    """

    messages: list[ChatMessage]
    max_tokens: int
    context: FailureContext | None = None
    features: Features | None = None
    prediction: Prediction | None = None
    retrieved: Retrieved = field(default_factory=lambda: Retrieved(runbooks=[], incidents=[]))
    json_schema: dict[str, Any] | None = None
    schema_name: str = "RemediationPlan"

    def schema(self, *, strict: bool) -> dict[str, Any]:
        """The JSON schema the answer must follow."""
        if self.json_schema is not None:
            return self.json_schema
        return plan_schema(self.retrieved.runbook_ids, self.retrieved.incident_ids, strict=strict)


@dataclass(frozen=True)
class Completion:
    """A provider's answer and what it cost (tokens as the endpoint reported them, or
    estimated at four characters a token when it reported none)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""


class Provider(Protocol):
    """A planner behind the common interface."""

    name: ProviderName
    model: str
    uses_tokens: bool
    """False for the heuristic: no budget applies and it is never re-asked."""

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one ask.

        Raises:
            ProviderError: The call failed (``ProviderTimeoutError`` when it took too long).
        """
        ...

    async def aclose(self) -> None:
        """Release the provider's connections."""
        ...


class HeuristicProvider:
    """The deterministic playbook recommender (:mod:`activities.agent.heuristic`)."""

    name: ProviderName = "heuristic"
    model = HEURISTIC_MODEL
    uses_tokens = False

    async def complete(self, request: ChatRequest) -> Completion:
        if request.context is None or request.features is None or request.prediction is None:
            raise ProviderError(
                self.name,
                f"the heuristic writes remediation plans only, not {request.schema_name}",
            )
        plan = recommend(request.context, request.features, request.prediction, request.retrieved)
        return Completion(text=plan.model_dump_json(), model=self.model)

    async def aclose(self) -> None:
        return None


def _estimate(text: str) -> int:
    return (len(text) + 3) // 4


class OpenAIProvider:
    """Any OpenAI-compatible chat-completions endpoint.

    Args:
        model: The model name sent with each request.
        base_url: The endpoint's ``/v1`` URL (unset: OpenAI's).
        api_key: Its key (servers that check none get a placeholder).
        response_format: ``json_schema`` (OpenAI) or ``json_object_schema`` (llama.cpp).
        timeout: Seconds for one call.
    """

    name: ProviderName = "openai"
    uses_tokens = True

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        response_format: ResponseFormat,
        timeout: float,
    ) -> None:
        self.model = model
        self.response_format = response_format
        self.timeout = timeout
        self.base_url = base_url
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", max_retries=0, timeout=timeout
        )

    def _response_format(self, request: ChatRequest) -> dict[str, Any]:
        if self.response_format == "json_schema":
            schema = request.schema(strict=True)
            return {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": schema, "strict": True},
            }
        return {"type": "json_object", "schema": request.schema(strict=False)}

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=cast(Any, request.messages),
                # llama.cpp's {"type": "json_object", "schema": …} is not in the SDK's types.
                response_format=cast(Any, self._response_format(request)),
                max_tokens=request.max_tokens,
                temperature=0,
            )
        except openai.APITimeoutError:
            raise ProviderTimeoutError(self.name, f"no answer within {self.timeout:g}s") from None
        except openai.APIStatusError as exc:
            raise ProviderError(
                self.name,
                f"HTTP {exc.status_code} from the endpoint: {str(exc.message)[:ERROR_CHARS]}",
            ) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(
                self.name, f"cannot reach {self.base_url or 'the endpoint'}: {exc}"
            ) from None
        except openai.OpenAIError as exc:  # malformed responses and the like
            raise ProviderError(
                self.name, f"{type(exc).__name__}: {str(exc)[:ERROR_CHARS]}"
            ) from None
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ProviderError(
                self.name, f"the answer has no choices: {str(response)[:ERROR_CHARS]}"
            )
        text = choices[0].message.content or ""
        usage = response.usage
        prompt = json.dumps(request.messages)
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else _estimate(prompt),
            completion_tokens=usage.completion_tokens if usage else _estimate(text),
            model=response.model or self.model,
        )

    async def aclose(self) -> None:
        await self._client.close()


class OllamaProvider:
    """An Ollama server through its native client, the answer constrained by ``format``.

    Args:
        model: The Ollama model (``llama3.2``, ``qwen2.5:7b``…).
        host: The server's URL.
        timeout: Seconds for one call.
    """

    name: ProviderName = "ollama"
    uses_tokens = True

    def __init__(self, *, model: str, host: str, timeout: float) -> None:
        self.model = model
        self.host = host
        self.timeout = timeout
        self._client = ollama.AsyncClient(host=host, timeout=timeout)

    async def complete(self, request: ChatRequest) -> Completion:
        schema = request.schema(strict=False)
        try:
            response = await self._client.chat(
                model=self.model,
                messages=request.messages,
                format=schema,
                options={"temperature": 0, "num_predict": request.max_tokens},
                stream=False,
            )
        except httpx.TimeoutException:
            raise ProviderTimeoutError(self.name, f"no answer within {self.timeout:g}s") from None
        except ollama.ResponseError as exc:
            raise ProviderError(
                self.name, f"HTTP {exc.status_code} from the server: {str(exc.error)[:ERROR_CHARS]}"
            ) from None
        except (httpx.HTTPError, ConnectionError) as exc:
            raise ProviderError(self.name, f"cannot reach {self.host}: {exc}") from None
        except ValueError as exc:  # a body that is not Ollama's JSON
            raise ProviderError(self.name, f"malformed answer: {str(exc)[:ERROR_CHARS]}") from None
        text = response.message.content or ""
        return Completion(
            text=text,
            prompt_tokens=response.prompt_eval_count or _estimate(json.dumps(request.messages)),
            completion_tokens=response.eval_count or _estimate(text),
            model=response.model or self.model,
        )

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


def provider_for(settings: Settings) -> Provider:
    """The provider ``MENDLINE_AGENT_PROVIDER`` names, built from the ``MENDLINE_LLM_*``
    settings.

    Raises:
        ProviderConfigError: A language-model provider without ``MENDLINE_LLM_MODEL``.
    """
    name = settings.agent_provider
    if name == "heuristic":
        return HeuristicProvider()
    if not settings.llm_model:
        raise ProviderConfigError(name, "MENDLINE_LLM_MODEL is not set; name the model to ask")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    if name == "openai":
        return OpenAIProvider(
            model=settings.llm_model,
            base_url=settings.llm_base_url,
            api_key=key,
            response_format=settings.llm_response_format,
            timeout=settings.llm_timeout,
        )
    return OllamaProvider(
        model=settings.llm_model,
        host=settings.llm_base_url or DEFAULT_OLLAMA_HOST,
        timeout=settings.llm_timeout,
    )
