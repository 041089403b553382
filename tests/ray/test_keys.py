"""Drivers' keys and the shared provider actors (runtime/keys.py), on the shared Ray session.

Several Runtimes in one namespace stand for several drivers joining one cluster: they share
the namespace's actors exactly as separate processes would (names are all that is shared).
An emulator that accepts only ``KEY_A`` shows whose key an actor really uses.
"""

from __future__ import annotations

import uuid

import pytest

from actors.runtime import Runtime
from llm.emulator.server import EmulatorConfig, settings_for, start_in_thread
from llm.exceptions import AuthenticationError, ConfigurationError
from llm.retry import RetryConfig
from llm.service import LLMService
from runtime.limits_config import AccountSpec

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::llm.service_checks.ModelLifecycleWarning"),
]

KEY_A = "sk-ant-driver-A-5f0c1e2d3b4a"
KEY_B = "sk-ant-driver-B-9e8d7c6b5a40"
NO_RETRY = RetryConfig(max_retries=0, initial_delay=0.01, max_delay=0.01, jitter=False)


async def ask(runtime: Runtime) -> str:
    service = LLMService(settings=runtime.settings, executor=runtime.executor())
    try:
        answer = await service.generate(
            model="claude-haiku-4.5", messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
    finally:
        await service.aclose()
    return answer.text


async def test_drivers_with_different_keys_never_share_a_provider_actor(ray_session, tmp_path):
    emulator = start_in_thread(EmulatorConfig(api_key=KEY_A))
    namespace = f"llm-keys-{uuid.uuid4().hex[:8]}"
    only_anthropic = {"anthropic": [AccountSpec(provider="anthropic")]}
    nowhere = {
        "anthropic": [
            AccountSpec(provider="anthropic", name="nokey", api_key_env="ANTHROPIC_KEY_NONE")
        ]
    }
    started: list[Runtime] = []

    def driver(key: str | None, limits=only_anthropic) -> Runtime:
        settings = settings_for(emulator.base_url, api_key=key or "").with_overrides(
            ledger_dir=str(tmp_path / "ledger")
        )
        runtime = Runtime(
            settings=settings, namespace=namespace, limits=limits, retry_config=NO_RETRY
        )
        started.append(runtime.start())
        return runtime

    try:
        first, second, other, keyless = driver(KEY_A), driver(KEY_A), driver(KEY_B), driver(None)
        (a1,) = first.provider_actors()["anthropic"]
        (a2,) = second.provider_actors()["anthropic"]
        (b,) = other.provider_actors()["anthropic"]
        assert a1._actor_id == a2._actor_id  # one key: one actor, one rate limiter
        assert b._actor_id != a1._actor_id  # another key: another actor
        assert first.router()._actor_id == second.router()._actor_id
        assert other.router()._actor_id != first.router()._actor_id  # routes only to own keys

        assert await ask(first) and await ask(second)  # KEY_A reached the actor from the driver
        with pytest.raises(AuthenticationError):  # KEY_B's actor calls with KEY_B, not KEY_A
            await ask(other)
        assert (await a1.describe.remote())["key_source"] == "the driver"

        # a driver with no key, and a cluster without one: a clear error, naming the variables
        nokey = driver(None, limits=nowhere)
        (n,) = nokey.provider_actors()["anthropic"]
        assert (await n.describe.remote())["key_source"] is None
        with pytest.raises(ConfigurationError) as info:
            await ask(nokey)
        assert "ANTHROPIC_KEY_NONE" in str(info.value) and "runtime_env" in str(info.value)

        import ray

        named = ray.util.list_named_actors(all_namespaces=True)
        names = sorted(a["name"] for a in named if a["namespace"] == namespace)
        providers = [name for name in names if name.startswith("llm-provider-")]
        assert len(providers) == 4 and "llm-provider-anthropic-nokey" in providers
        assert "llm-provider-anthropic-default" in providers  # the keyless driver's
        assert not any(KEY_A in name or KEY_B in name for name in names)
        assert keyless.provider_actors()["anthropic"][0]._actor_id != a1._actor_id
        first.shutdown()  # commits the ledger
    finally:
        import ray

        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == namespace:
                ray.kill(ray.get_actor(actor["name"], namespace=namespace), no_restart=True)
        emulator.stop()
