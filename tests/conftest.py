"""Shared fixtures: a sentinel API key, an in-process emulator, one Ray session per run."""

from __future__ import annotations

import os

import pytest

from tests.dates import REFERENCE_DAY, real_calendar_watch
from tests.ledger_support import stop_followers  # noqa: F401 (a fixture)

#: Used as the API key everywhere in tests; it must never show up in logs or outputs.
SENTINEL_KEY = "sk-SENTINEL-0123456789abcdef-DO-NOT-LEAK"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """Tests never see the developer's real keys or base URLs."""
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name.endswith("_BASE_URL") or name.startswith("LLM_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DEFAULT_LLM_MODEL", raising=False)
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture(scope="session")
def ray_session():
    """The one embedded Ray session of a test run (2 CPUs, no dashboard), started on first use.

    ``address="local"`` makes sure the tests never join another cluster on this machine.
    """
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            namespace="llm-tests",
            log_to_driver=False,
        )
        started = True
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(autouse=True)
def _no_lifecycle_time_bombs(request):
    """Fail a test that judges a model whose lifecycle still changes (a retirement date after
    :data:`tests.dates.REFERENCE_DAY`) on the real calendar: the service or registry without
    ``today``, or an emulator engine on the real wall clock (:func:`tests.dates.real_calendar_watch`).
    Such a test would start failing on the model's retirement day. Pin the day
    (``tests/dates.py``) or use a model with no announced retirement; a test whose assertions
    hold on any day may say so with ``@pytest.mark.real_calendar``."""
    if request.node.get_closest_marker("real_calendar"):
        yield
        return
    with real_calendar_watch() as met:
        yield
    if met:
        pytest.fail(
            "judged on the real calendar, these lifecycles change after "
            f"{REFERENCE_DAY} (the test would break on that day): {sorted(met)}; pin the day "
            "(tests/dates.py) or use a model with no announced retirement",
            pytrace=False,
        )
