"""The router actor: knows every provider actor, polls their headroom, hands out route tables.

The router is not on the path of each request. Drivers fetch :meth:`RouterActor.routes`
every couple of seconds and then call provider actors directly. Every ``poll_interval_s``
(1 s) the router asks each provider actor for its stats; an actor that does not answer
within ``poll_timeout_s`` is marked unreachable (it may be restarting) until it answers
again. The policy itself (what a table holds, fallback chains) is in
:mod:`runtime.routing`; this class only gathers the inputs.

This class is plain Python; :mod:`actors.factory` turns it into a Ray actor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from llm.registry import resolve_model
from runtime.routing import (
    ActorRoute,
    RouteTable,
    build_route_table,
    fallback_chain,
    parse_fallbacks,
    route_from_stats,
)

logger = logging.getLogger("llm.runtime")


class RouterActor:
    """Route tables and fallback chains for every driver; see the module docstring."""

    def __init__(
        self,
        provider_actors: Mapping[str, Sequence[str]],
        *,
        namespace: str = "llm",
        fallbacks: str | Mapping[str, Sequence[str]] | None = None,
        poll_interval_s: float = 1.0,
        poll_timeout_s: float = 2.0,
    ) -> None:
        self.namespace = namespace
        self.poll_interval_s = poll_interval_s
        self.poll_timeout_s = poll_timeout_s
        self._names: dict[str, list[str]] = {p: list(ns) for p, ns in provider_actors.items()}
        if isinstance(fallbacks, str) or fallbacks is None:
            self._fallbacks = parse_fallbacks(fallbacks)
        else:
            self._fallbacks = {m: tuple(chain) for m, chain in fallbacks.items()}
        self._handles: dict[str, Any] = {}
        self._routes: dict[str, ActorRoute] = {}
        self._version = 0
        self._table: RouteTable | None = None
        self._poller: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ route tables

    async def routes(self) -> RouteTable:
        """The latest route table (polled now if there is none yet)."""
        if self._table is None:
            await self.poll()
        self._ensure_polling()
        assert self._table is not None
        return self._table

    async def poll(self) -> RouteTable:
        """Ask every provider actor for its stats now and rebuild the table."""
        pairs = [(p, name) for p, names in self._names.items() for name in names]
        stats = await asyncio.gather(*(self._stats_of(name) for _, name in pairs))
        for (provider, name), found in zip(pairs, stats, strict=True):
            self._routes[name] = route_from_stats(name, provider, found)
        self._version += 1
        self._table = build_route_table(
            self._routes.values(), self._fallbacks, version=self._version
        )
        return self._table

    def provider_actors(self) -> dict[str, list[str]]:
        """Names of every provider actor, by provider."""
        return {p: list(names) for p, names in self._names.items()}

    def _ensure_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll()
            except Exception:  # keep serving the last table; the next poll may work
                logger.exception("route poll failed")

    async def _stats_of(self, name: str) -> Any | None:
        try:
            handle = self._handle(name)
            return await asyncio.wait_for(handle.stats.remote(), self.poll_timeout_s)
        except Exception as error:  # unreachable for now: restarting, or gone
            logger.info("provider actor %s did not answer: %s", name, type(error).__name__)
            return None

    def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            import ray

            handle = self._handles[name] = ray.get_actor(name, namespace=self.namespace)
        return handle

    # ------------------------------------------------------------------ model policy

    def fallback(self, model_name: str, routed_by_task: bool = False) -> list[str]:
        """Stand-ins for ``model_name``, first choice first (see :mod:`runtime.routing`)."""
        return fallback_chain(
            resolve_model(model_name), self._fallbacks, routed_by_task=routed_by_task
        )
