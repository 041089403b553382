"""The public entry point: :class:`LLMService`, one API over Claude, Gemini and OpenAI.

::

    from llm import LLMService, Message, MessageRole

    async with LLMService() as service:
        response = await service.generate(
            model="claude-sonnet-4.5",
            messages=[Message(role=MessageRole.USER, content="Hello")],
        )

A call is resolved against the model registry, checked (:mod:`llm.service_checks`), sent
through an :class:`~llm.executor.Executor` (in process by default, or through the Ray
actors with ``runtime="ray"``), priced, tracked and logged. Structured output is parsed and
validated here, with a bounded re-ask when the reply does not match the schema.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Any

from llm.config import Settings, load_settings
from llm.cost import CostTracker, summarize
from llm.exceptions import ConfigurationError, LLMError, StructuredOutputError
from llm.executor import CallContext, Executed, Executor, default_executor
from llm.logging_policy import log_call, log_failure
from llm.models import ModelInfo
from llm.prepare import pick_model, prepare_request
from llm.providers.base import ProviderRequest, ToolSpec
from llm.recommend import get_best_model_for_task
from llm.registry import (
    check_not_retired,
    lifecycle_warning,
    list_available_models,
)
from llm.retry import RetryConfig
from llm.service_checks import ModelLifecycleWarning, check_credentials
from llm.service_response import call_response, merge_calls
from llm.streaming import ResponseStream
from llm.structured import parse_structured, reask_message
from llm.summary import format_cost_summary
from llm.types import LLMResponse, Message, MessageRole

__all__ = ["LLMService", "ModelLifecycleWarning", "ResponseStream"]

RUNTIMES = ("local", "ray")
MessagesArg = Sequence[Message | dict[str, Any]]
ToolsArg = Sequence[ToolSpec | dict[str, Any]]
#: The request options :meth:`LLMService.generate` and :meth:`LLMService.generate_stream`
#: take, passed on to :meth:`LLMService._prepare` by name.
_REQUEST_OPTIONS = (
    "max_tokens",
    "temperature",
    "enable_caching",
    "structured_output_schema",
    "tools",
    "tool_choice",
    "reasoning_effort",
    "timeout",
    "cache_ttl",
    "task",
    "budget",
)


class LLMService:
    """Generate text, streams, structured output and tool calls with any registered model.

    ``offline=True`` (or ``LLM_OFFLINE=1``) starts the built-in emulator in a background
    thread and points every provider at it. ``executor`` replaces the runtime's executor
    (the service then owns it and closes it in :meth:`aclose`). ``today``, ``sleep``,
    ``clock`` and ``now`` (the wall clock that dates each call, and so picks the prices in
    force) are injectable for tests.
    """

    def __init__(
        self,
        *,
        enable_cost_tracking: bool = True,
        retry_config: RetryConfig | None = None,
        settings: Settings | None = None,
        runtime: str | None = None,
        executor: Executor | None = None,
        cost_tracker: CostTracker | None = None,
        structured_output_retries: int = 1,
        offline: bool | None = None,
        today: dt.date | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        settings = settings or load_settings()
        self._emulator: Any = None
        if settings.offline if offline is None else offline:
            settings = self._start_emulator(settings)
        self.settings = settings
        self.runtime = (runtime or settings.runtime).lower()
        if self.runtime not in RUNTIMES:
            raise ConfigurationError(f"runtime must be one of {', '.join(RUNTIMES)}")
        if structured_output_retries < 0:
            raise ConfigurationError("structured_output_retries must be 0 or more")
        self.retry_config = retry_config or RetryConfig()
        self.cost_tracker = (cost_tracker or CostTracker()) if enable_cost_tracking else None
        self.structured_output_retries = structured_output_retries
        self._executor = executor
        self._custom_executor = executor is not None
        self._today = today
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._warned: set[str] = set()

    def _start_emulator(self, settings: Settings) -> Settings:
        try:
            from llm.emulator.server import EmulatorConfig, settings_for, start_in_thread
        except ImportError:
            raise ConfigurationError("offline mode needs the built-in emulator") from None
        self._emulator = start_in_thread(EmulatorConfig())
        return settings_for(self._emulator.base_url, base=settings)

    # ------------------------------------------------------------------ executor

    @property
    def executor(self) -> Executor:
        """The executor calls run on (created on first use)."""
        if self._executor is None:
            self._executor = self._make_executor()
        return self._executor

    def _make_executor(self) -> Executor:
        return default_executor(
            self.runtime,
            self.settings,
            self.retry_config,
            sleep=self._sleep,
            clock=self._clock,
            now=self._now,
        )

    # ------------------------------------------------------------------ preparation

    def _pick_model(self, model: str | None, task: str | None, budget: str | None) -> ModelInfo:
        return pick_model(
            model, task, budget, default_model=self.settings.default_model, today=self._today
        )

    def _warn_lifecycle(self, model: ModelInfo, *, stacklevel: int) -> None:
        if model.name in self._warned:
            return
        self._warned.add(model.name)
        text = lifecycle_warning(model, today=self._today)
        if text:
            warnings.warn(text, ModelLifecycleWarning, stacklevel=stacklevel)

    def _begin(self, arguments: dict[str, Any]) -> tuple[ProviderRequest, CallContext]:
        """The prepared request and call context of a :meth:`generate` or
        :meth:`generate_stream` call, from the call's arguments (its ``locals()`` before
        anything else is bound), so that the two public signatures and :meth:`_prepare`'s are
        the only lists of the request options (``tests/test_service.py`` checks they agree).
        """
        options = {name: arguments[name] for name in _REQUEST_OPTIONS}
        request = self._prepare(arguments["model"], arguments["messages"], **options)
        model, task = arguments["model"], arguments["task"]
        ctx = _context(
            arguments["request_id"] or uuid.uuid4().hex,
            dict(arguments["metadata"] or {}),
            routed=model is None and task is not None,
        )
        return request, ctx

    def _prepare(
        self,
        model: str | None,
        messages: MessagesArg | None,
        *,
        max_tokens: int | None,
        temperature: float | None,
        enable_caching: bool | None,
        structured_output_schema: dict[str, Any] | None,
        tools: ToolsArg | None,
        tool_choice: str | dict[str, Any] | None,
        reasoning_effort: str | None,
        timeout: float | None,
        cache_ttl: str,
        task: str | None,
        budget: str | None,
    ) -> ProviderRequest:
        info = self._pick_model(model, task, budget)
        check_not_retired(info, today=self._today)  # the provider would answer 404
        self._warn_lifecycle(info, stacklevel=5)  # the caller of generate (via _begin)
        caching = self.settings.enable_caching if enable_caching is None else bool(enable_caching)
        request = prepare_request(
            info,
            messages,
            enable_caching=caching,
            max_tokens=max_tokens,
            temperature=temperature,
            structured_output_schema=structured_output_schema,
            tools=tools,
            tool_choice=tool_choice,
            reasoning_effort=reasoning_effort,
            timeout=timeout,
            cache_ttl=cache_ttl,
        )
        self._admit_key(info)
        return request

    def _admit_key(self, info: ModelInfo) -> None:
        if not self._custom_executor:
            check_credentials(self.settings, info.provider)

    # ------------------------------------------------------------------ calls

    async def send(
        self,
        request: ProviderRequest,
        *,
        request_id: str | None = None,
        job_id: str | None = None,
        row_id: str | None = None,
        routed_by_task: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> LLMResponse:
        """Send a request already prepared by :func:`llm.prepare.prepare_request` (a batch
        row's, prepared once), as :meth:`generate` would send it: the same admission checks
        (retired model, lifecycle warning, key), retries, re-asks, pricing and tracking.

        ``job_id``/``row_id`` tag the call for the ledger; ``routed_by_task`` says the model
        was picked by task/budget, so the runtime may fall back to another provider's.
        """
        check_not_retired(request.model, today=self._today)
        self._warn_lifecycle(request.model, stacklevel=3)  # the caller of send
        self._admit_key(request.model)
        ctx = CallContext(
            request_id=request_id or uuid.uuid4().hex,
            job_id=job_id,
            row_id=row_id,
            routed_by_task=routed_by_task,
            metadata=dict(metadata or {}),
        )
        return await self._send(request, ctx)

    async def generate(
        self,
        model: str | None = None,
        messages: MessagesArg | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        enable_caching: bool | None = None,
        structured_output_schema: dict[str, Any] | None = None,
        tools: ToolsArg | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        reasoning_effort: str | None = None,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        cache_ttl: str = "5m",
        task: str | None = None,
        budget: str | None = None,
        request_id: str | None = None,
    ) -> LLMResponse:
        """Send one request and return the full response (retries and re-asks included).

        ``model=None`` picks the recommendation for ``task``/``budget`` if given, else
        ``settings.default_model``. Raises :mod:`llm.exceptions` errors only.
        """
        request, ctx = self._begin(locals())
        return await self._send(request, ctx)

    async def _send(self, request: ProviderRequest, ctx: CallContext) -> LLMResponse:
        try:
            response = await self._run(request, ctx)
        except LLMError as error:
            log_failure(request.model.name, request.model.provider, error, call_id=ctx.request_id)
            raise
        log_call(self.settings, response, request.messages, call_id=ctx.request_id)
        return response

    async def _run(self, request: ProviderRequest, first: CallContext) -> LLMResponse:
        started = self._clock()
        schema = request.structured_output_schema
        call_id, meta = first.request_id, first.metadata
        calls: list[LLMResponse] = []
        for round_index in range(self.structured_output_retries + 1):
            this_id = call_id if round_index == 0 else f"{call_id}-{round_index + 1}"
            ctx = first.model_copy(update={"request_id": this_id})
            round_start = self._clock()
            executed = await self.executor.execute(request, ctx)
            call = call_response(
                request.model,
                executed,
                call_id=this_id,
                metadata=meta,
                latency_s=self._clock() - round_start,
                at=self._now(),
            )
            self._track(call)
            calls.append(call)
            if schema is None or call.tool_calls:
                return merge_calls(
                    calls, structured_output=None, latency_s=self._clock() - started, metadata=meta
                )
            value, problem = parse_structured(call.text, schema)
            if problem is None:
                return merge_calls(
                    calls, structured_output=value, latency_s=self._clock() - started, metadata=meta
                )
            reply = Message(role=MessageRole.ASSISTANT, content=call.text)
            messages = (*request.messages, reply, reask_message(problem))
            request = request.model_copy(update={"messages": messages})
        raise _structured_error(request.model, calls[-1].text, problem, len(calls))

    def generate_stream(
        self,
        model: str | None = None,
        messages: MessagesArg | None = None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        enable_caching: bool | None = None,
        structured_output_schema: dict[str, Any] | None = None,
        tools: ToolsArg | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        reasoning_effort: str | None = None,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        cache_ttl: str = "5m",
        task: str | None = None,
        budget: str | None = None,
        request_id: str | None = None,
    ) -> ResponseStream:
        """Stream one request: ``async for chunk in stream``, then ``stream.response``.

        The request is checked at once (errors raise here); structured output is validated
        when the stream ends (no re-ask: the text has already been shown).
        """
        request, ctx = self._begin(locals())
        call_id, meta = ctx.request_id, ctx.metadata
        started = self._clock()

        def finish(executed: Executed) -> LLMResponse:
            response = call_response(
                request.model,
                executed,
                call_id=call_id,
                metadata=meta,
                latency_s=self._clock() - started,
                at=self._now(),
            )
            self._track(response)
            response = self._with_structured(request, response)
            log_call(self.settings, response, request.messages, call_id=call_id)
            return response

        def on_error(error: BaseException) -> None:
            log_failure(request.model.name, request.model.provider, error, call_id=call_id)

        return ResponseStream(self.executor.execute_stream(request, ctx), finish, on_error)

    def _with_structured(self, request: ProviderRequest, response: LLMResponse) -> LLMResponse:
        schema = request.structured_output_schema
        if schema is None or response.tool_calls:
            return response
        value, problem = parse_structured(response.text, schema)
        if problem is not None:
            raise _structured_error(request.model, response.text, problem, 1)
        return response.model_copy(update={"structured_output": value})

    def _track(self, response: LLMResponse) -> None:
        if self.cost_tracker is not None:
            self.cost_tracker.track_request(response)

    # ------------------------------------------------------------------ helpers

    def get_recommended_model(self, task: str, budget: str = "medium") -> str:
        """The best active model for ``task`` within ``budget`` ("low", "medium", "high")."""
        return get_best_model_for_task(task, budget, today=self._today)

    def list_available_models(self) -> list[str]:
        """Canonical names of every model that is not retired."""
        return list_available_models(today=self._today)

    def get_cost_stats(self) -> dict[str, Any]:
        """Cost totals of this service's calls (empty totals if tracking is off)."""
        if self.cost_tracker is None:
            return summarize([])
        return self.cost_tracker.get_stats()

    def print_cost_summary(self, file: IO[str] | None = None) -> None:
        """Print the cost summary in the brief's format."""
        print(format_cost_summary(self.get_cost_stats()), file=file or sys.stdout)

    async def aclose(self) -> None:
        """Close connection pools and stop the offline emulator, if one was started."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await executor.aclose()
        emulator, self._emulator = self._emulator, None
        if emulator is not None:
            emulator.stop()

    async def __aenter__(self) -> LLMService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _structured_error(
    model: ModelInfo, raw_text: str, problem: str | None, attempts: int
) -> StructuredOutputError:
    return StructuredOutputError(
        f"the reply did not match the JSON schema after {attempts} attempt(s) "
        "(details in validation_error)",
        raw_text=raw_text,
        validation_error=problem,
        provider=model.provider,
        model=model.name,
    )


def _context(request_id: str, metadata: dict[str, Any], *, routed: bool = False) -> CallContext:
    """The context of a :meth:`LLMService.generate` call. ``routed`` marks a model picked by
    task/budget, which the runtime may fall back from.

    A direct caller may still tag a call for the ledger with ``metadata={"job_id", "row_id"}``
    (documented in the README); they become the context's typed fields here, once. The batch
    job passes them typed, through :meth:`LLMService.send`.
    """
    job_id, row_id = metadata.get("job_id"), metadata.get("row_id")
    return CallContext(
        request_id=request_id,
        job_id=str(job_id) if job_id is not None else None,
        row_id=str(row_id) if row_id is not None else None,
        routed_by_task=routed,
        metadata=metadata,
    )
