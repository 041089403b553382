"""A retired model fails fast: never sent, a typed error naming the replacement, a per-row
error in a batch job; and the emulator answers 404 for it like the real API."""

from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc
import pytest

from jobs.batch import service_call
from jobs.batch_core import BatchConfig, run_batch
from jobs.batch_output import OutputWriter, read_output
from llm.config import Settings
from llm.emulator.engine import EmulatorConfig, Engine
from llm.emulator.protocol import EmuError
from llm.executor import Executed
from llm.providers.base import ProviderResult
from llm.registry import get_model_info
from llm.service import LLMService
from llm.types import Usage

TODAY = dt.date(2026, 11, 27)


class RecordingExecutor:
    def __init__(self):
        self.sent: list[str] = []

    async def execute(self, request, ctx):
        self.sent.append(request.model.name)
        return Executed(result=ProviderResult(text="ok", usage=Usage(input_tokens=3)))

    async def aclose(self):
        return None


async def test_a_retired_model_row_is_a_per_row_error_and_nothing_is_sent(tmp_path):
    executor = RecordingExecutor()
    service = LLMService(
        settings=Settings(openai_api_key="sk-test"), executor=executor, today=TODAY
    )
    items = [
        {"id": "old", "model": "o4-mini", "prompt": "q"},
        {"id": "new", "model": "gpt-6.1-sol", "prompt": "q"},
    ]
    summary = await run_batch(
        items,
        call=service_call(service),
        writer=OutputWriter(tmp_path, flush_rows=1000),
        done_ids=set(),
        config=BatchConfig(job_id="job-1", concurrency=2),
        budget=None,
    )
    assert (summary.ok, summary.failed) == (1, 1)
    assert summary.failures_by_type == {"ModelRetiredError": 1}
    table = read_output(tmp_path)
    errors = table.filter(pc.equal(table["status"], "error")).to_pylist()
    assert [row["id"] for row in errors] == ["old"]
    assert "gpt-5.6-terra" in str(errors[0])
    assert executor.sent == ["gpt-6.1-sol"]


def _engine(day: dt.date) -> Engine:
    wall = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC).timestamp()
    return Engine(EmulatorConfig(), wall=lambda: wall)


@pytest.mark.parametrize(
    ("provider", "name"),
    [("openai", "o4-mini"), ("anthropic", "claude-opus-4.1"), ("google", "gemini-3-pro-preview")],
)
def test_the_emulator_answers_404_for_a_retired_model(provider, name):
    api_id = get_model_info(name).api_id
    with pytest.raises(EmuError) as caught:
        _engine(TODAY)._model(provider, api_id)
    assert caught.value.kind == "not_found"


def test_the_emulator_serves_a_model_until_its_retirement_day():
    api_id = get_model_info("claude-sonnet-4.5").api_id  # retires 2026-11-30
    assert _engine(dt.date(2026, 11, 29))._model("anthropic", api_id).name == "claude-sonnet-4.5"
    with pytest.raises(EmuError):
        _engine(dt.date(2026, 11, 30))._model("anthropic", api_id)
    assert _engine(TODAY)._model("openai", "gpt-6.1-sol").name == "gpt-6.1-sol"
