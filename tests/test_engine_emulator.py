"""ProviderEngine with the real Anthropic adapter against the local emulator (loopback HTTP)."""

from __future__ import annotations

import asyncio

import pytest

from llm.exceptions import RateLimitError
from llm.executor import CallContext
from llm.providers.base import ProviderRequest
from llm.providers.factory import create_adapter
from llm.registry import get_model_info
from llm.retry import RetryConfig
from llm.types import Message, MessageRole
from runtime.engine import MemoryLedger, ProviderEngine
from runtime.limiter import AccountLimits

server = pytest.importorskip("llm.emulator.server")

SONNET = get_model_info("claude-sonnet-4.6")
FAN_OUT = 8


def _request(text: str, system: str | None = None) -> ProviderRequest:
    messages = [Message(role=MessageRole.SYSTEM, content=system)] if system else []
    messages.append(Message(role=MessageRole.USER, content=f"{text} [[emu:tokens=8]]"))
    return ProviderRequest(
        model=SONNET, messages=tuple(messages), max_tokens=64, enable_caching=system is not None
    )


def _system(topic: str) -> str:
    return f"You answer questions about {topic}. " + "Clause seven applies to all. " * 300


async def test_cache_fan_out_writes_the_prefix_once():
    config = server.EmulatorConfig(latency_ms=150)  # cache entries readable only once started
    async with server.Emulator(config) as emu:
        settings = server.settings_for(emu.base_url)
        ledger = MemoryLedger()
        engine = ProviderEngine("anthropic", settings, ledger=ledger)
        naive = create_adapter("anthropic", settings)
        try:
            system = _system("the engine run")
            executed = await asyncio.gather(
                *(
                    engine.execute(
                        _request(f"Question {i}?", system), CallContext(request_id=f"e{i}")
                    )
                    for i in range(FAN_OUT)
                )
            )
            other = _system("the naive run")  # its own, still cold, prefix
            direct = await asyncio.gather(
                *(naive.generate(_request(f"Question {i}?", other)) for i in range(FAN_OUT))
            )
        finally:
            await engine.aclose()
            await naive.aclose()

    usages = [e.result.usage for e in executed]
    writers = [u for u in usages if u.cache_write_tokens]
    assert len(writers) == 1
    prefix = writers[0].cache_write_tokens
    assert prefix >= SONNET.capabilities.min_cacheable_tokens
    assert sorted(u.cached_tokens for u in usages) == [0] + [prefix] * (FAN_OUT - 1)
    assert sum(r.cache_write_tokens for r in ledger.records) == prefix
    stats = engine.stats()
    # The leader is also the account's first request (its calibration probe), so the others
    # follow it as followers or, once it has finished, as warm hits.
    assert stats.cache_leaders == 1
    assert stats.cache_followers + stats.cache_warm_hits == FAN_OUT - 1
    # Without the gate every concurrent request pays the write.
    assert [u.usage.cache_write_tokens > 0 for u in direct] == [True] * FAN_OUT
    assert sum(u.usage.cached_tokens for u in direct) == 0


async def test_client_side_limits_avoid_429s():
    # 40 requests at 600 rpm: more than the account's one-second window admits at once
    # (10), so the limiter must pace them.
    rpm, count = 600, 40
    async with server.Emulator(server.EmulatorConfig(rpm=rpm)) as emu:
        engine = ProviderEngine(
            "anthropic",
            server.settings_for(emu.base_url),
            limits=AccountLimits(rpm=rpm),
            retry_config=RetryConfig(max_retries=0),  # a 429 would surface as an error
        )
        naive = create_adapter("anthropic", server.settings_for(emu.base_url, api_key="other"))
        try:
            outcomes = await asyncio.gather(
                *(
                    engine.execute(_request(f"Q{i}"), CallContext(request_id=f"q{i}"))
                    for i in range(count)
                ),
                return_exceptions=True,
            )
            control = await asyncio.gather(
                *(naive.generate(_request(f"Q{i}")) for i in range(count)),
                return_exceptions=True,
            )
        finally:
            await engine.aclose()
            await naive.aclose()

    assert [type(o).__name__ for o in outcomes if isinstance(o, BaseException)] == []
    assert engine.stats().rate_limited == 0
    # The same burst sent straight to the adapter (another key, its own bucket) hits 429s.
    assert any(isinstance(o, RateLimitError) for o in control)
