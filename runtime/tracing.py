"""OpenTelemetry spans of provider calls, in the GenAI semantic conventions (opt-in).

Only ``opentelemetry-api`` is used. Without an SDK configured (no ``TracerProvider`` set by
the application, or ``OTEL_SDK_DISABLED=true``) the API hands out non-recording spans and
this module builds no attributes, so the cost is a few attribute look-ups per call.

One span per call (kind CLIENT, named ``chat {request model}``), from the engine's start of
the call to its end, covering every attempt:

* ``gen_ai.operation.name`` (``chat``), ``gen_ai.provider.name`` and the older
  ``gen_ai.system`` (``anthropic``, ``openai``, ``gcp.gemini``), ``gen_ai.request.model``
  (the API id), ``gen_ai.request.max_tokens`` / ``temperature``, ``gen_ai.response.model``,
  ``gen_ai.response.id``, ``gen_ai.response.finish_reasons``, ``server.address`` and
  ``server.port``;
* usage: ``gen_ai.usage.input_tokens`` and ``gen_ai.usage.output_tokens`` (input includes the
  cache parts, output the reasoning part, as the conventions define),
  ``gen_ai.usage.cache_read.input_tokens``, ``gen_ai.usage.cache_creation.input_tokens``,
  ``gen_ai.usage.reasoning.output_tokens``;
* ours, under ``llm.``: ``llm.request_id``, ``llm.job_id``, ``llm.row_id``, ``llm.account``,
  ``llm.model`` (canonical name), ``llm.attempts``, ``llm.cost_usd``, ``llm.cache_savings_usd``,
  ``llm.cache.role``, ``llm.streamed``, ``llm.replayed``;
* a failed call sets status ERROR and ``error.type`` (the exception's class name; never its
  message, which may quote the request);
* each retry is an event ``gen_ai.retry`` with ``llm.attempt``, ``error.type`` and
  ``llm.retry_delay_s``.

Across Ray. The span is made where the call runs: in process, a child of the caller's current
span; in a provider actor, a child of the driver's span that was current when the call was
sent, because :class:`~actors.executor.RayExecutor` puts the W3C trace context into
``CallContext.metadata["otel"]`` (:func:`with_trace_context`) and the actor resumes it. The
actors' worker processes record spans only if an SDK is set up there too (for example by a
``worker_process_setup_hook`` in the job's runtime environment).

Text is never recorded unless the settings allow it: ``gen_ai.input.messages`` and
``gen_ai.system_instructions`` only with ``LLM_LOG_PROMPTS``, ``gen_ai.output.messages``
only with ``LLM_LOG_RESPONSES``. Nothing here reads an API key.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from llm.executor import CallContext, Executed
from llm.providers.base import ProviderRequest
from llm.types import MessageRole

TRACER_NAME = "llm-layer"

#: ``CallContext.metadata`` key of the caller's W3C trace context.
TRACE_CONTEXT_KEY = "otel"

#: Our provider names → ``gen_ai.provider.name`` values.
PROVIDER_NAMES = {"anthropic": "anthropic", "openai": "openai", "google": "gcp.gemini"}

#: Each provider's API host when no base URL is configured.
DEFAULT_HOSTS = {
    "anthropic": "api.anthropic.com",
    "openai": "api.openai.com",
    "google": "generativelanguage.googleapis.com",
}


def server_of(provider: str, base_url: str | None) -> tuple[str, int]:
    """(``server.address``, ``server.port``) of a provider's endpoint (never its query)."""
    if base_url:
        parts = urlsplit(base_url)
        if parts.hostname:
            default = 443 if parts.scheme == "https" else 80
            return parts.hostname, parts.port or default
    return DEFAULT_HOSTS.get(provider, provider), 443


def _tracer(tracer_provider: Any = None) -> Any:
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)


class CallSpan:
    """The span of one call; every method is a no-op when the span does not record."""

    __slots__ = ("_span", "model")

    def __init__(self, span: Any, model: str = "") -> None:
        self._span = span
        #: The canonical model name of the call (for metrics of a call that never ended).
        self.model = model

    @property
    def recording(self) -> bool:
        """Whether an SDK records this span."""
        return self._span.is_recording()

    def set(self, key: str, value: Any) -> None:
        """Set one attribute (if recording)."""
        if value is not None and self._span.is_recording():
            self._span.set_attribute(key, value)

    def retry(self, attempt: int, error: BaseException, delay_s: float) -> None:
        """An attempt failed and will be retried after ``delay_s``."""
        if self._span.is_recording():
            self._span.add_event(
                "gen_ai.retry",
                {
                    "llm.attempt": attempt,
                    "error.type": type(error).__name__,
                    "llm.retry_delay_s": round(float(delay_s), 6),
                },
            )

    def finish(
        self,
        executed: Executed,
        *,
        cost_usd: Decimal | None,
        savings_usd: Decimal | None,
        streamed: bool,
        log_responses: bool,
    ) -> None:
        """Record the answer's attributes and end the span."""
        span = self._span
        if span.is_recording():
            result = executed.result
            usage = result.usage
            attributes: dict[str, Any] = {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
                "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
                "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
                "gen_ai.response.finish_reasons": [
                    result.raw_finish_reason or result.finish_reason
                ],
                "llm.attempts": executed.attempts,
                "llm.streamed": streamed,
                "llm.replayed": bool(result.provider_details.get("replayed")),
            }
            if result.model_version:
                attributes["gen_ai.response.model"] = result.model_version
            if result.request_id:
                attributes["gen_ai.response.id"] = result.request_id
            if cost_usd is not None:
                attributes["llm.cost_usd"] = float(cost_usd)
            if savings_usd is not None:
                attributes["llm.cache_savings_usd"] = float(savings_usd)
            if log_responses:
                attributes["gen_ai.output.messages"] = _output_messages(executed)
            span.set_attributes(attributes)
        span.end()

    def fail(self, error: BaseException) -> None:
        """Record the error's type (never its text) and end the span."""
        span = self._span
        if span.is_recording():
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", type(error).__name__)
            attempts = getattr(error, "attempts", None)
            if isinstance(attempts, int):
                span.set_attribute("llm.attempts", attempts)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()


def start_call_span(
    provider: str,
    account: str,
    request: ProviderRequest,
    ctx: CallContext,
    *,
    log_prompts: bool = False,
    tracer_provider: Any = None,
    server: tuple[str, int] | None = None,
) -> CallSpan:
    """Start the span of one call (a child of the current span, if any).

    ``tracer_provider`` defaults to the global one the application configured.
    """
    from opentelemetry.trace import SpanKind

    model = request.model.api_id
    parent = None
    carrier = ctx.metadata.get(TRACE_CONTEXT_KEY)
    if isinstance(carrier, dict) and carrier:
        from opentelemetry import propagate

        parent = propagate.extract(carrier)
    span = _tracer(tracer_provider).start_span(
        f"chat {model}", context=parent, kind=SpanKind.CLIENT
    )
    if span.is_recording():
        system = PROVIDER_NAMES.get(provider, provider)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": system,
            "gen_ai.system": system,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": request.max_tokens,
            "llm.model": request.model.name,
            "llm.account": account,
            "llm.request_id": ctx.request_id,
        }
        if server is not None:
            attributes["server.address"], attributes["server.port"] = server
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if ctx.job_id:
            attributes["llm.job_id"] = ctx.job_id
        if ctx.row_id:
            attributes["llm.row_id"] = ctx.row_id
        if log_prompts:
            system_text, messages = _input_messages(request)
            attributes["gen_ai.input.messages"] = messages
            if system_text:
                attributes["gen_ai.system_instructions"] = system_text
        span.set_attributes(attributes)
    return CallSpan(span, request.model.name)


def with_trace_context(ctx: CallContext) -> CallContext:
    """``ctx`` carrying the current span's trace context (unchanged when there is none)."""
    from opentelemetry import propagate, trace

    if not trace.get_current_span().get_span_context().is_valid:
        return ctx
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return ctx
    return ctx.model_copy(update={"metadata": {**ctx.metadata, TRACE_CONTEXT_KEY: carrier}})


def _input_messages(request: ProviderRequest) -> tuple[str, str]:
    """(system instructions JSON, input messages JSON) in the conventions' shapes."""
    system = [
        {"type": "text", "content": m.text()}
        for m in request.messages
        if m.role == MessageRole.SYSTEM
    ]
    turns = [
        {"role": m.role.value, "parts": [{"type": "text", "content": m.text()}]}
        for m in request.messages
        if m.role != MessageRole.SYSTEM
    ]
    return (json.dumps(system, ensure_ascii=False) if system else "", json.dumps(turns))


def _output_messages(executed: Executed) -> str:
    result = executed.result
    parts: list[dict[str, Any]] = []
    if result.text:
        parts.append({"type": "text", "content": result.text})
    for call in result.tool_calls:
        parts.append(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        )
    message = {"role": "assistant", "parts": parts, "finish_reason": result.finish_reason}
    return json.dumps([message], ensure_ascii=False, default=str)
