"""``LLMService.generate`` and ``generate_stream`` share one path from their arguments to
the request and call context (``LLMService._begin``): the option lists agree, every option
reaches the request, and a lifecycle warning still points at the caller's line."""

from __future__ import annotations

import datetime as dt
import inspect
import warnings

from llm.service import _REQUEST_OPTIONS, LLMService, ModelLifecycleWarning
from tests.test_service import FakeExecutor, keyed_settings, result, user

#: claude-sonnet-4.5 retires on 2026-11-30: deprecated (within 30 days) on this date.
BEFORE_RETIREMENT = dt.date(2026, 11, 20)


def _keywords(method) -> list[str]:
    return [
        name
        for name, param in inspect.signature(method).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def test_generate_and_stream_take_the_same_arguments_and_pass_every_option_on():
    generate = inspect.signature(LLMService.generate).parameters
    stream = inspect.signature(LLMService.generate_stream).parameters
    assert [(p.name, p.default) for p in generate.values()] == [
        (p.name, p.default) for p in stream.values()
    ]
    prepared = set(_keywords(LLMService._prepare))
    assert set(_REQUEST_OPTIONS) == prepared
    assert set(_keywords(LLMService.generate)) == prepared | {"metadata", "request_id"}


def _service() -> tuple[LLMService, FakeExecutor]:
    executor = FakeExecutor(result(), result())
    service = LLMService(executor=executor, settings=keyed_settings(), today=BEFORE_RETIREMENT)
    return service, executor


async def test_both_paths_build_the_same_request_and_context():
    service, executor = _service()
    options = dict(
        max_tokens=77,
        temperature=0.25,
        reasoning_effort=None,
        metadata={"job_id": "j", "row_id": "r", "tag": 1},
        request_id="call-1",
    )
    await service.generate(model="claude-haiku-4.5", messages=user(), **options)
    stream = service.generate_stream(model="claude-haiku-4.5", messages=user(), **options)
    async for _ in stream:
        pass
    assert stream.response.metadata["tag"] == 1
    first, second = executor.requests
    assert first == second
    assert first.max_tokens == 77 and first.temperature == 0.25
    ctx = executor.contexts[0]
    assert (ctx.request_id, ctx.job_id, ctx.row_id) == ("call-1", "j", "r")
    assert not ctx.routed_by_task


async def test_lifecycle_warning_points_at_the_callers_line():
    for call in ("generate", "generate_stream"):
        service, _ = _service()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if call == "generate":
                await service.generate(model="claude-sonnet-4.5", messages=user())
            else:
                service.generate_stream(model="claude-sonnet-4.5", messages=user())
        lifecycle = [w for w in caught if issubclass(w.category, ModelLifecycleWarning)]
        assert len(lifecycle) == 1, call
        assert lifecycle[0].filename == __file__, (call, lifecycle[0].filename)
