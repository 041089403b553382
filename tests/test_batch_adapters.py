"""The three batch adapters through their official SDKs against the emulator: submit, poll,
results mapped to ProviderResult / LLMResponse at batch prices, per-row typed errors,
cancel and expiry."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from llm.emulator.batch_store import DAY_S, batch_service
from llm.emulator.server import Emulator, EmulatorConfig, settings_for
from llm.exceptions import ModelNotFoundError, ProviderError
from llm.executor import Executed
from llm.models import ModelInfo
from llm.pricing import compute_cost
from llm.providers.base import ProviderRequest
from llm.providers.batch_base import (
    BatchRow,
    BatchRowCanceledError,
    BatchRowExpiredError,
)
from llm.providers.factory import make_batch_adapter
from llm.registry import get_model_info
from llm.service_response import call_response
from llm.types import Message, MessageRole

MODELS = {
    "anthropic": "claude-haiku-5.5",
    "openai": "gpt-6.1-terra",
    "google": "gemini-3.8-flash",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def emu():
    async with Emulator(EmulatorConfig()) as server:
        service = batch_service(server.engine)
        service.settings.clock = FakeClock()
        service.settings.processing_s = 30.0
        yield server


def _row(custom_id: str, model: ModelInfo, text: str, **extra) -> BatchRow:
    request = ProviderRequest(
        model=model,
        messages=(Message(role=MessageRole.USER, content=text),),
        max_tokens=2048,
        **extra,
    )
    return BatchRow(custom_id=custom_id, request=request)


@pytest.mark.parametrize("provider", sorted(MODELS))
async def test_submit_poll_results_and_row_errors(emu, provider):
    model = get_model_info(MODELS[provider])
    adapter = make_batch_adapter(provider, settings_for(emu.base_url))
    clock = batch_service(emu.engine).settings.clock
    rows = [_row("ok", model, "hello there"), _row("boom", model, "x [[emu:fault=500]]")]
    batch_id = await adapter.submit(rows, display_name="test")
    first = await adapter.status(batch_id)
    assert first.state == "in_progress" and not first.ended
    clock.now += 31
    done = await adapter.status(batch_id)
    assert done.ended and done.reason == "completed"
    results = await adapter.results(batch_id, model.name, ["ok", "boom"])
    assert [r.custom_id for r in results] == ["ok", "boom"]
    ok, boom = results
    assert ok.kind == "succeeded" and ok.result.text and ok.result.usage.output_tokens > 0
    assert boom.kind == "errored" and isinstance(boom.error, ProviderError)
    assert boom.error.provider == provider
    response = call_response(
        model,
        Executed(result=ok.result),
        call_id="c",
        metadata={},
        latency_s=0.0,
        at=dt.datetime(2026, 11, 27, tzinfo=dt.UTC),
        service_tier="batch",
    )
    standard = compute_cost(model, ok.result.usage, at=dt.date(2026, 11, 27))
    assert response.metadata["tier"] == "batch"
    assert response.cost.total_cost == standard.total_cost / 2  # no caching: exactly half
    await adapter.aclose()


@pytest.mark.parametrize("provider", sorted(MODELS))
async def test_cancel_and_expiry(emu, provider):
    model = get_model_info(MODELS[provider])
    adapter = make_batch_adapter(provider, settings_for(emu.base_url))
    settings = batch_service(emu.engine).settings
    canceled = await adapter.submit([_row("a", model, "x")])
    status = await adapter.cancel(canceled)
    assert status.state in ("canceling", "ended")
    assert (await adapter.status(canceled)).reason == "canceled"
    [row] = await adapter.results(canceled, model.name, ["a"])
    assert row.kind == "canceled" and isinstance(row.error, BatchRowCanceledError)

    settings.processing_s = 2 * DAY_S
    late = await adapter.submit([_row("b", model, "y")])
    settings.clock.now += DAY_S
    assert (await adapter.status(late)).reason == "expired"
    [row] = await adapter.results(late, model.name, ["b"])
    assert row.kind == "expired" and isinstance(row.error, BatchRowExpiredError)
    assert row.error.retryable
    await adapter.aclose()


async def test_unknown_model_row_is_a_typed_error(emu):
    real = get_model_info("claude-haiku-5.5")
    ghost = real.model_copy(update={"api_id": "claude-ghost-1"})
    adapter = make_batch_adapter("anthropic", settings_for(emu.base_url))
    batch_id = await adapter.submit([_row("g", ghost, "hi")])
    batch_service(emu.engine).settings.clock.now += 31
    [row] = await adapter.results(batch_id, "claude-ghost", ["g"])
    assert isinstance(row.error, ModelNotFoundError)
    await adapter.aclose()


async def test_cache_reads_inside_a_batch(emu):
    model = get_model_info("claude-haiku-5.5")
    adapter = make_batch_adapter("anthropic", settings_for(emu.base_url))
    prefix = "You are a careful annotator. " + "Guideline sentence number. " * 900
    rows = [
        BatchRow(
            custom_id=f"r{i}",
            request=ProviderRequest(
                model=model,
                messages=(
                    Message(role=MessageRole.SYSTEM, content=prefix),
                    Message(role=MessageRole.USER, content=f"item {i}"),
                ),
                max_tokens=32,
                enable_caching=True,
            ),
        )
        for i in range(4)
    ]
    batch_id = await adapter.submit(rows)
    batch_service(emu.engine).settings.clock.now += 31
    results = await adapter.results(batch_id, model.name, [r.custom_id for r in rows])
    usages = [r.result.usage for r in results]
    assert usages[0].cache_write_tokens > 0
    assert all(u.cached_tokens > 0 for u in usages[1:])
    await adapter.aclose()


async def test_gemini_file_input_past_the_inline_limit(emu):
    """Past the inline limit the rows go as an uploaded JSONL file (files.upload, then
    batches.create(src="files/...")) and come back in a results file (files.download)."""
    model = get_model_info(MODELS["google"])
    adapter = make_batch_adapter("google", settings_for(emu.base_url))
    system = Message(role=MessageRole.SYSTEM, content="Answer briefly.")
    ok_row = _row("ok", model, "hello there")
    ok_row = ok_row.model_copy(
        update={
            "request": ok_row.request.model_copy(
                update={"messages": (system,) + ok_row.request.messages}
            )
        }
    )
    rows = [ok_row, _row("boom", model, "x [[emu:fault=500]]")]
    adapter.inline_max_bytes = 100  # these two rows pass it
    service = batch_service(emu.engine)
    batch_id = await adapter.submit(rows, display_name="file-test")
    job = service.jobs[batch_id]
    assert job.meta["file_input"] and [cid for cid, _ in job.rows] == ["ok", "boom"]
    uploaded = [f for name, f in service.files.items() if name.startswith("files/")]
    assert len(uploaded) == 1 and uploaded[0]["source"] == "UPLOADED"
    assert uploaded[0]["mimeType"] == "application/jsonl"
    first_line = json.loads(uploaded[0]["_content"].splitlines()[0])
    assert first_line["key"] == "ok"
    assert first_line["request"]["systemInstruction"]["parts"][0]["text"] == "Answer briefly."
    assert "generationConfig" in first_line["request"]
    assert not (await adapter.status(batch_id)).ended
    service.settings.clock.now += 31
    assert (await adapter.status(batch_id)).reason == "completed"
    ok, boom = await adapter.results(batch_id, model.name, ["ok", "boom"])
    assert ok.kind == "succeeded" and ok.result.text and ok.result.usage.output_tokens > 0
    assert boom.kind == "errored" and isinstance(boom.error, ProviderError)
    # the same rows inline answer alike
    adapter.inline_max_bytes = type(adapter).inline_max_bytes
    inline_id = await adapter.submit(rows)
    assert not service.jobs[inline_id].meta["file_input"]
    service.settings.clock.now += 31
    inline_ok, _ = await adapter.results(inline_id, model.name, ["ok", "boom"])
    assert inline_ok.result.usage.input_tokens == ok.result.usage.input_tokens
    await adapter.aclose()


async def test_gemini_file_batch_expiry_and_the_files_api_guards(emu):
    model = get_model_info(MODELS["google"])
    adapter = make_batch_adapter("google", settings_for(emu.base_url))
    adapter.inline_max_bytes = 1
    service = batch_service(emu.engine)
    service.settings.processing_s = 2 * DAY_S
    late = await adapter.submit([_row("b", model, "y")])
    service.settings.clock.now += DAY_S
    [row] = await adapter.results(late, model.name, ["b"])
    assert row.kind == "expired" and isinstance(row.error, BatchRowExpiredError)
    client = adapter._get_client()
    [uploaded] = [name for name in service.files if name.startswith("files/")]
    assert (await client.aio.files.get(name=uploaded)).size_bytes > 0
    with pytest.raises(Exception, match="generated files"):  # inputs are not downloadable
        await client.aio.files.download(file=uploaded)
    other = make_batch_adapter("google", settings_for(emu.base_url, api_key="AIza-other-key"))
    with pytest.raises(Exception, match="does not exist"):  # files belong to their key
        await other._get_client().aio.files.get(name=uploaded)
    await adapter.aclose()
    await other.aclose()
