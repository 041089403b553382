"""``llm.executor.retried_stream``: the one stream-retry loop of the plain executor and the
runtime engine (text chunks, then one ``Executed`` with its attempts; retried only while
nothing has reached the caller)."""

from __future__ import annotations

import pytest

from llm.exceptions import ProviderConnectionError, ProviderError
from llm.executor import Executed, retried_stream
from llm.providers.base import ProviderRequest, ProviderResult
from llm.registry import get_model_info
from llm.retry import RetryConfig, RetryPolicy
from llm.types import Message, MessageRole, Usage


def _request() -> ProviderRequest:
    model = get_model_info("claude-haiku-5.5")
    assert model is not None
    return ProviderRequest(
        model=model, messages=(Message(role=MessageRole.USER, content="hi"),), max_tokens=10
    )


def _policy(retries: int, sleeps: list[float]) -> RetryPolicy:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    config = RetryConfig(max_retries=retries, initial_delay=0.5, jitter=False)
    return RetryPolicy(config, sleep=sleep)


async def _collect(stream) -> list:
    return [item async for item in stream]


async def test_chunks_then_one_executed_counting_the_attempts():
    script = [ProviderError("503", provider="anthropic", status=503), ["", "He", "llo"]]
    retried: list[int] = []

    async def once():
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        for chunk in step:
            yield chunk
        yield ProviderResult(text="Hello", usage=Usage(input_tokens=3, output_tokens=2))

    sleeps: list[float] = []
    items = await _collect(
        retried_stream(
            _policy(2, sleeps), once, _request(), on_retry=lambda n, e, d: retried.append(n)
        )
    )
    assert items[:2] == ["He", "llo"]  # the empty chunk is not passed on
    assert isinstance(items[2], Executed) and items[2].attempts == 2
    assert retried == [1] and sleeps == [0.5]


async def test_a_stream_without_a_final_result_is_retried_then_fails():
    calls = []

    async def once():
        calls.append(1)
        return
        yield  # an async generator that ends at once

    with pytest.raises(ProviderConnectionError, match="without a final result") as caught:
        await _collect(retried_stream(_policy(1, []), once, _request()))
    assert len(calls) == 2 and caught.value.attempts == 2
    assert caught.value.provider == "anthropic"


async def test_no_retry_once_a_chunk_reached_the_caller():
    calls = []

    async def once():
        calls.append(1)
        yield "partial"
        raise ProviderError("503", provider="anthropic", status=503)

    with pytest.raises(ProviderError):
        await _collect(retried_stream(_policy(3, []), once, _request()))
    assert len(calls) == 1
