"""Every current model answers through its real adapter and SDK against the emulator, is
billed at its registry price, and a retired one gets the real API's 404 even when sent raw."""

from __future__ import annotations

import pytest

from llm.emulator.server import settings_for, start_in_thread
from llm.exceptions import ModelNotFoundError
from llm.pricing import compute_cost
from llm.providers.base import ProviderRequest
from llm.providers.factory import create_adapter
from llm.registry import all_models
from llm.retry import RetryConfig
from llm.service import LLMService
from llm.types import Message, MessageRole
from tests.conftest import SENTINEL_KEY

# Lifecycle warnings fail the test: the models below are all current.
pytestmark = pytest.mark.filterwarnings("error::llm.service_checks.ModelLifecycleWarning")

CURRENT = sorted(
    model.name
    for model in all_models()
    if model.lifecycle.retires_on is None and model.lifecycle.status == "active"
)


@pytest.fixture(scope="module")
def emulator():
    thread = start_in_thread()
    yield thread
    thread.stop()


@pytest.fixture
async def service(emulator):
    svc = LLMService(
        settings=settings_for(emulator.base_url, api_key=SENTINEL_KEY),
        retry_config=RetryConfig(initial_delay=0.001, max_delay=0.01, jitter=False),
    )
    yield svc
    await svc.aclose()


def test_the_current_list_is_the_new_lineup():
    assert len(CURRENT) >= 30
    assert {"claude-sonnet-5.5", "gpt-6.1-sol", "gemini-3.8-flash", "gemini-4-argon"} <= set(
        CURRENT
    )


@pytest.mark.parametrize("name", CURRENT)
async def test_every_current_model_answers_and_is_billed(service, name):
    response = await service.generate(
        model=name,
        messages=[Message(role=MessageRole.USER, content="Say hello [[emu:tokens=12]]")],
        max_tokens=4000,
    )
    assert response.model == name and response.text
    assert response.usage.output_tokens > 0
    model = next(m for m in all_models() if m.name == name)
    assert response.cost == compute_cost(model, response.usage)
    assert response.cost.total_cost > 0


async def test_a_retired_model_sent_past_the_registry_check_gets_404(emulator):
    settings = settings_for(emulator.base_url, api_key=SENTINEL_KEY)
    retired = next(m for m in all_models() if m.name == "o4-mini")
    adapter = create_adapter("openai", settings)
    request = ProviderRequest(
        model=retired,
        messages=(Message(role=MessageRole.USER, content="hi"),),
        max_tokens=20,
    )
    try:
        with pytest.raises(ModelNotFoundError):
            await adapter.generate(request)
    finally:
        await adapter.aclose()
