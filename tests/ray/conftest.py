"""One Ray session and one emulator for every Ray test of the run, plus a Runtime per test.

Ray costs about six seconds to start, so the whole run shares one embedded session
(``ray_session``). Each test gets its own actor namespace (``runtime``): the actors of one
test never serve another, and they are killed when the test ends.
"""

from __future__ import annotations

import uuid

import pytest

from actors.runtime import Runtime
from llm.emulator.server import settings_for, start_in_thread
from llm.retry import RetryConfig

ray = pytest.importorskip("ray")

FAST_RETRY = RetryConfig(initial_delay=0.01, max_delay=0.05, jitter=False)


@pytest.fixture(scope="session")
def ray_emulator():
    """An emulator in a thread of the test process; provider actors call it over loopback."""
    thread = start_in_thread()
    yield thread
    thread.stop()


@pytest.fixture
def make_runtime(ray_session, ray_emulator, tmp_path):
    """Start Runtimes on the shared session, each in a fresh namespace; killed at the end.

    ``make_runtime(before=fn)`` calls ``fn(namespace, ledger_dir)`` first (to create an actor
    with special options, which the runtime then finds by name).
    """
    started = []

    def make(before=None, **kwargs) -> Runtime:
        ledger_dir = tmp_path / f"ledger-{len(started)}"
        namespace = kwargs.pop("namespace", f"llm-test-{uuid.uuid4().hex[:8]}")
        if before is not None:
            before(namespace, str(ledger_dir))
        settings = settings_for(ray_emulator.base_url).with_overrides(ledger_dir=str(ledger_dir))
        kwargs.setdefault("retry_config", FAST_RETRY)
        runtime = Runtime(settings=settings, namespace=namespace, **kwargs).start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.shutdown(kill_actors=True)


@pytest.fixture
def runtime(make_runtime):
    """A started Runtime on the shared session, in a namespace of its own."""
    return make_runtime()
