"""The emulated batch APIs through the unmodified official SDKs: submit, poll, results,
per-row errors, cancel, expiry on an injected clock, size limits, batch usage fields."""

from __future__ import annotations

import io
import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as gtypes

from llm.emulator.batch_store import DAY_S, batch_service
from llm.emulator.server import start_in_thread


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def emu():
    thread = start_in_thread()
    yield thread
    thread.stop()


@pytest.fixture
def clock(emu):
    service = batch_service(emu.engine)
    fake = FakeClock()
    service.settings.clock = fake
    service.settings.processing_s = 60.0
    yield fake
    service.reset()


def _claude(emu):
    return anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)


def _openai(emu):
    return openai.OpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)


def _gemini(emu):
    return genai.Client(api_key="k", http_options=gtypes.HttpOptions(base_url=emu.base_url))


def _params(text: str, model: str = "claude-haiku-5-5") -> dict:
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}


def test_anthropic_submit_poll_results_and_row_errors(emu, clock):
    client = _claude(emu)
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "ok-1", "params": _params("hello")},
            {"custom_id": "bad-model", "params": _params("hi", "claude-nope")},
            {"custom_id": "fault", "params": _params("x [[emu:fault=500]]")},
        ]
    )
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    clock.now += 61
    done = client.messages.batches.retrieve(batch.id)
    assert done.processing_status == "ended"
    assert done.request_counts.succeeded == 1 and done.request_counts.errored == 2
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["ok-1"].type == "succeeded"
    assert results["ok-1"].message.usage.service_tier == "batch"
    assert results["ok-1"].message.content[0].text
    assert results["bad-model"].type == "errored"
    assert results["bad-model"].error.error.type == "not_found_error"
    assert results["fault"].error.error.type == "api_error"


def test_anthropic_cancel_and_expiry(emu, clock):
    client = _claude(emu)
    first = client.messages.batches.create(requests=[{"custom_id": "a", "params": _params("x")}])
    canceling = client.messages.batches.cancel(first.id)
    assert canceling.processing_status == "canceling"
    ended = client.messages.batches.retrieve(first.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 1
    assert [r.result.type for r in client.messages.batches.results(first.id)] == ["canceled"]

    batch_service(emu.engine).settings.processing_s = 2 * DAY_S  # never finishes in time
    second = client.messages.batches.create(requests=[{"custom_id": "b", "params": _params("y")}])
    clock.now += DAY_S - 1
    assert client.messages.batches.retrieve(second.id).processing_status == "in_progress"
    clock.now += 1
    assert client.messages.batches.retrieve(second.id).request_counts.expired == 1
    assert [r.result.type for r in client.messages.batches.results(second.id)] == ["expired"]


def test_anthropic_limits_and_validation(emu, clock):
    client = _claude(emu)
    settings = batch_service(emu.engine).settings
    settings.anthropic_max_requests = 2
    try:
        with pytest.raises(anthropic.BadRequestError, match="maximum is 2"):
            client.messages.batches.create(
                requests=[{"custom_id": f"r{i}", "params": _params("x")} for i in range(3)]
            )
    finally:
        settings.anthropic_max_requests = 100_000
    with pytest.raises(anthropic.BadRequestError, match="duplicate"):
        client.messages.batches.create(requests=[{"custom_id": "same", "params": _params("x")}] * 2)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_unknown")


def _openai_file(client, lines: list[dict]) -> str:
    data = "\n".join(json.dumps(line) for line in lines).encode()
    return client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch").id


def _chat_line(custom_id: str, text: str, model: str = "gpt-6.1-terra") -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def test_openai_file_batch_output_and_error_files(emu, clock):
    client = _openai(emu)
    file_id = _openai_file(
        client, [_chat_line("one", "hello"), _chat_line("two", "boom [[emu:fault=500]]")]
    )
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    assert client.batches.retrieve(batch.id).status == "in_progress"
    clock.now += 61
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.request_counts.total == 2 and done.request_counts.failed == 1
    output = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert output[0]["custom_id"] == "one"
    assert output[0]["response"]["status_code"] == 200
    assert output[0]["response"]["body"]["service_tier"] == "batch"
    assert output[0]["response"]["body"]["choices"][0]["message"]["content"]
    assert errors[0]["custom_id"] == "two" and errors[0]["response"]["status_code"] == 500


def test_openai_cancel_expiry_and_limits(emu, clock):
    client = _openai(emu)
    service = batch_service(emu.engine)
    file_id = _openai_file(client, [_chat_line("a", "x")])
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert client.batches.cancel(batch.id).status == "cancelling"
    assert client.batches.retrieve(batch.id).status == "cancelled"

    service.settings.processing_s = 2 * DAY_S
    late = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    clock.now += DAY_S
    expired = client.batches.retrieve(late.id)
    assert expired.status == "expired"
    line = json.loads(client.files.content(expired.error_file_id).text)
    assert line["error"]["code"] == "batch_expired"

    service.settings.openai_max_requests = 1
    try:
        two = _openai_file(client, [_chat_line("a", "x"), _chat_line("b", "y")])
        failed = client.batches.create(
            input_file_id=two, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert failed.status == "failed"
        assert failed.errors.data[0].code == "too_many_requests"
    finally:
        service.settings.openai_max_requests = 50_000
    service.settings.openai_max_file_bytes = 10
    try:
        with pytest.raises(openai.BadRequestError, match="too large"):
            _openai_file(client, [_chat_line("a", "x")])
    finally:
        service.settings.openai_max_file_bytes = 200 * 1024 * 1024


def test_gemini_inline_batch(emu, clock):
    client = _gemini(emu)
    job = client.batches.create(
        model="gemini-3.8-flash",
        src=[
            {
                "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
                "metadata": {"key": "r1"},
            },
            {
                "contents": [{"role": "user", "parts": [{"text": "x [[emu:fault=500]]"}]}],
                "metadata": {"key": "r2"},
            },
        ],
    )
    assert job.name.startswith("batches/")
    assert job.state.name == "JOB_STATE_RUNNING"
    clock.now += 61
    done = client.batches.get(name=job.name)
    assert done.state.name == "JOB_STATE_SUCCEEDED"
    inlined = done.dest.inlined_responses
    assert inlined[0].metadata == {"key": "r1"} and inlined[0].response.text
    assert inlined[1].error is not None and inlined[1].response is None

    second = client.batches.create(
        model="gemini-3.8-flash",
        src=[{"contents": [{"role": "user", "parts": [{"text": "x"}]}]}],
    )
    client.batches.cancel(name=second.name)
    assert client.batches.get(name=second.name).state.name == "JOB_STATE_CANCELLED"

    batch_service(emu.engine).settings.gemini_max_inline_bytes = 10
    try:
        with pytest.raises(genai.errors.ClientError):
            client.batches.create(
                model="gemini-3.8-flash",
                src=[{"contents": [{"role": "user", "parts": [{"text": "x"}]}]}],
            )
    finally:
        batch_service(emu.engine).settings.gemini_max_inline_bytes = 20 * 1024 * 1024
