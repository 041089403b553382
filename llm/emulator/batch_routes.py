"""HTTP routes of the three emulated batch APIs, as the unmodified SDKs call them.

One module per provider (:mod:`llm.emulator.batch_anthropic`, :mod:`llm.emulator.batch_openai`,
:mod:`llm.emulator.batch_gemini`, on the shared :mod:`llm.emulator.batch_http`);
:func:`add_batch_routes` adds the endpoints of every provider whose wire module is loaded.
State, timing and expiry live in :mod:`llm.emulator.batch_store`; each row is parsed, answered
and rendered by the same wire modules and engine as an online call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from llm.emulator.batch_anthropic import AnthropicBatchRoutes
from llm.emulator.batch_gemini import GeminiBatchRoutes
from llm.emulator.batch_openai import OpenAIBatchRoutes
from llm.emulator.engine import Engine


class BatchRoutes(AnthropicBatchRoutes, GeminiBatchRoutes, OpenAIBatchRoutes):
    """The batch endpoints of one emulator app."""

    def add_to(self, app: web.Application) -> None:
        if self.wires.get("anthropic") is not None:
            self.add_anthropic(app)
        if self.wires.get("openai") is not None:
            self.add_openai(app)
        if self.wires.get("google") is not None:
            self.add_gemini(app)


def add_batch_routes(app: web.Application, engine: Engine, wires: Mapping[str, Any]) -> None:
    """Add the batch endpoints of every provider whose wire module is loaded."""
    BatchRoutes(engine, wires).add_to(app)
