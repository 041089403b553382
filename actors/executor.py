"""RayExecutor: the :class:`~llm.executor.Executor` that sends calls to the provider actors.

``LLMService(runtime="ray")`` (or ``LLM_RUNTIME=ray``) builds one with
:func:`actors.runtime.ray_executor` (through the service's one seam,
:func:`llm.executor.default_executor`): an executor owning a default
:class:`~actors.runtime.Runtime` that it starts (or joins, with ``LLM_RAY_ADDRESS``) on first
use. ``runtime.executor()`` gives one bound to a runtime you started yourself. This module
does not import :mod:`actors.runtime` (the runtime imports it), so the two do not form a
cycle.

Per call:

1. the route table comes from a cache refreshed in the background from the router actor
   once it is ``refresh_s`` (2 s) old, so the router is not a hop per request;
2. the actor of the request's provider is picked by :class:`~runtime.routing.ActorChooser`
   (headroom first, then fewest calls in flight from this driver, then round-robin);
3. the call goes straight to that actor (``execute``, or ``execute_stream`` as a Ray
   streaming generator whose items are awaited one by one);
4. on :class:`ProviderOverloadedError` or :class:`CircuitOpenError` (before any text reached
   the caller) the request is re-issued to another account's actor of the same provider,
   then along the model's fallback chain (:mod:`runtime.routing`), each re-issue with its own
   derived request id so its ledger row is its own.

Errors raised inside an actor reach the caller as the original :mod:`llm.exceptions` error;
an actor that cannot be reached at all becomes :class:`ProviderConnectionError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from llm.exceptions import (
    CircuitOpenError,
    LLMError,
    ProviderConnectionError,
    ProviderOverloadedError,
)
from llm.executor import CallContext, Executed
from llm.models import ModelInfo
from llm.providers.base import ProviderRequest
from runtime.routing import (
    ActorChooser,
    RouteTable,
    derived_request_id,
    fallback_request,
)
from runtime.tracing import with_trace_context

#: Errors after which a request is re-issued elsewhere.
REROUTE_ERRORS: tuple[type[LLMError], ...] = (ProviderOverloadedError, CircuitOpenError)


class RayExecutor:
    """Sends calls to provider actors; see the module docstring.

    ``source`` is a :class:`~actors.runtime.Runtime` (or any object with its ``router()``,
    ``namespace`` and ``is_started``); one not started yet is started on first use. With
    ``owns_runtime`` the executor shuts it down in :meth:`aclose`.
    """

    def __init__(
        self,
        source: Any,
        *,
        owns_runtime: bool = False,
        refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (hasattr(source, "router") and hasattr(source, "namespace")):
            raise TypeError("RayExecutor takes a Runtime")
        self._runtime, self._owns_runtime = source, owns_runtime
        self.refresh_s = refresh_s
        self._clock = clock
        self._chooser = ActorChooser()
        self._table: RouteTable | None = None
        self._fetched_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._handles: dict[str, Any] = {}
        self._fallbacks: dict[tuple[str, bool], list[str]] = {}
        self._started = bool(getattr(self._runtime, "is_started", True))
        self._start_lock = asyncio.Lock()

    @property
    def runtime(self) -> Any:
        return self._runtime

    # ------------------------------------------------------------------ routes

    async def _ensure_started(self) -> None:
        """Start the runtime once. In the main thread ``ray.init`` runs right here (it blocks
        the loop for its few seconds, once) so that it can install its signal handlers;
        elsewhere it runs in a worker thread."""
        if self._started:
            return
        if threading.current_thread() is threading.main_thread():
            self._runtime.start()
        else:
            async with self._start_lock:
                if not self._started:
                    await asyncio.to_thread(self._runtime.start)
        self._started = True

    async def routes(self) -> RouteTable:
        """The cached route table; a refresh starts in the background once it is stale."""
        await self._ensure_started()
        if self._table is None:
            await self._refresh()
        elif self._clock() - self._fetched_at >= self.refresh_s:
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        assert self._table is not None
        return self._table

    def capacity(self) -> int | None:
        """Calls worth having in flight over every provider actor, as last polled.

        The sum of the actors' in-flight targets (:mod:`runtime.inflight`) in the cached
        route table; None before the table was fetched or when no actor reported one.
        A batch job sizes its look-ahead from it.
        """
        table = self._table
        if table is None:
            return None
        total = sum(
            route.in_flight_target
            for routes in table.providers.values()
            for route in routes
            if route.usable
        )
        return total or None

    async def _refresh(self) -> None:
        table = await _unwrapped(self._runtime.router().routes.remote())
        self._table, self._fetched_at = table, self._clock()

    def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            import ray

            handle = ray.get_actor(name, namespace=self._runtime.namespace)
            self._handles[name] = handle
        return handle

    async def _fallback_names(
        self, table: RouteTable, model: ModelInfo, routed_by_task: bool
    ) -> list[str]:
        """Configured chains come with the table; only task-routed calls ask the router."""
        if model.name in table.fallbacks:
            return list(table.fallbacks[model.name])
        if not routed_by_task:
            return []
        key = (model.name, routed_by_task)
        if key not in self._fallbacks:
            ref = self._runtime.router().fallback.remote(model.name, routed_by_task)
            self._fallbacks[key] = await _unwrapped(ref)
        return self._fallbacks[key]

    async def _plan(self, request: ProviderRequest, ctx: CallContext) -> Iterator[Any]:
        """Yield ``(actor name, request, ctx)`` to try, in order (see the module docstring)."""
        ctx = with_trace_context(ctx)  # the actor's span continues the caller's trace
        table = await self.routes()
        routed = ctx.routed_by_task
        names = await self._fallback_names(table, request.model, routed)
        options = [request, *(r for n in names if (r := fallback_request(request, n)))]
        return _attempts(table, options, ctx, self._chooser)

    # ------------------------------------------------------------------ calls

    async def execute(self, request: ProviderRequest, ctx: CallContext) -> Executed:
        """Run ``request`` on a provider actor, re-routing on overload / open circuit."""
        last: LLMError | None = None
        for name, this_request, this_ctx in await self._plan(request, ctx):
            self._chooser.started(name)
            try:
                ref = self._handle(name).execute.remote(this_request, this_ctx)
                return await _unwrapped(ref)
            except REROUTE_ERRORS as error:
                last = error
            finally:
                self._chooser.finished(name)
        raise last or _no_actor(request)

    async def execute_stream(
        self, request: ProviderRequest, ctx: CallContext
    ) -> AsyncIterator[str | Executed]:
        """Stream ``request`` from a provider actor; re-routes only before the first chunk."""
        last: LLMError | None = None
        for name, this_request, this_ctx in await self._plan(request, ctx):
            self._chooser.started(name)
            method = self._handle(name).execute_stream.options(num_returns="streaming")
            stream = method.remote(this_request, this_ctx)
            started = False
            try:
                async with contextlib.aclosing(_items(stream)) as items:
                    async for item in items:
                        started = started or isinstance(item, str)
                        yield item
                return
            except REROUTE_ERRORS as error:
                if started:
                    raise
                last = error
            except (LLMError, asyncio.CancelledError, GeneratorExit):
                _cancel(stream)
                raise
            finally:
                self._chooser.finished(name)
        raise last or _no_actor(request)

    async def aclose(self) -> None:
        """Stop the background refresh; shut the runtime down if this executor started it."""
        task, self._refreshing = self._refreshing, None
        if task is not None and not task.done():
            task.cancel()
        if self._owns_runtime and self._started:
            await asyncio.to_thread(self._runtime.shutdown)
            self._started = False


def _attempts(
    table: RouteTable, options: list[ProviderRequest], ctx: CallContext, chooser: ActorChooser
) -> Iterator[tuple[str, ProviderRequest, CallContext]]:
    """Every actor of the first model's provider, then of each fallback's; lazily chosen."""
    issued = 0
    for request in options:
        tried: list[str] = []
        while (
            name := chooser.choose(table.actors(request.model.provider), exclude=tried)
        ) is not None:
            tried.append(name)
            this_ctx = ctx
            if issued:
                this_ctx = ctx.model_copy(
                    update={"request_id": derived_request_id(ctx.request_id, issued)}
                )
            issued += 1
            yield name, request, this_ctx


async def _unwrapped(awaitable: Awaitable[Any]) -> Any:
    """Await a Ray object ref, raising the actor's own error instead of Ray's wrapper."""
    import ray.exceptions as rex

    try:
        return await awaitable
    except rex.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, LLMError):
            raise cause from None
        raise ProviderConnectionError(f"actor call failed: {type(cause).__name__}") from None
    except (rex.RayActorError, rex.ActorUnavailableError) as error:
        raise ProviderConnectionError(
            f"provider actor unavailable: {type(error).__name__}"
        ) from None


async def _items(stream: Any) -> AsyncIterator[Any]:
    """The values of a Ray streaming generator, with actor errors unwrapped."""
    refs = stream.__aiter__()
    while True:
        try:
            ref = await _unwrapped(refs.__anext__())
        except StopAsyncIteration:
            return
        yield await _unwrapped(ref)


def _cancel(stream: Any) -> None:
    import ray

    try:
        ray.cancel(stream)
    except Exception:  # already finished, or the actor is gone
        pass


def _no_actor(request: ProviderRequest) -> LLMError:
    return ProviderConnectionError(
        f"no provider actor for {request.model.provider}",
        provider=request.model.provider,
        model=request.model.name,
    )
