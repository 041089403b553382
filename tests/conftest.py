"""Shared fixtures: a sentinel API key, an in-process emulator, one Ray session per run."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time

import pytest

from llm import models
from llm.emulator.engine import Engine
from llm.models import Lifecycle, ModelInfo
from tests.dates import REFERENCE_DAY
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


class _RealDay(dt.date):
    """A day read from the real calendar (:func:`llm.models.lifecycle_day` without a day)."""


def _changes_after_reference(life: Lifecycle) -> bool:
    """Whether ``life``'s status still changes after the tests' reference day: judged on the
    real calendar, such a model makes a test fail (or pass) depending on when it runs."""
    dates = (life.deprecated_on, life.retires_on)
    return any(day is not None and day > REFERENCE_DAY for day in dates)


@pytest.fixture(autouse=True)
def _no_lifecycle_time_bombs(monkeypatch, request):
    """Fail a test that judges a model whose lifecycle still changes (a retirement date after
    :data:`tests.dates.REFERENCE_DAY`) on the real calendar: the service or registry without
    ``today``, or an emulator engine on the real wall clock. Such a test would start failing
    on the model's retirement day. Pin the day (``tests/dates.py``) or use a model with no
    announced retirement. No assert here ever reads the real date."""
    if request.node.get_closest_marker("real_calendar"):
        yield
        return
    met: set[str] = set()
    original = models.lifecycle_day

    def tagged_day(today: dt.date | None = None) -> dt.date:
        day = original(today)
        return day if today is not None else _RealDay(day.year, day.month, day.day)

    for name, module in list(sys.modules.items()):
        if name.startswith("llm") and getattr(module, "lifecycle_day", None) is original:
            monkeypatch.setattr(module, "lifecycle_day", tagged_day)

    status_on = ModelInfo.status_on

    def watched_status_on(self: ModelInfo, today: dt.date | None = None) -> str:
        real = today is None or isinstance(today, _RealDay)
        if real and _changes_after_reference(self.lifecycle):
            met.add(f"{self.name} (retires {self.lifecycle.retires_on})")
        return status_on(self, today)

    monkeypatch.setattr(ModelInfo, "status_on", watched_status_on)
    retired = Engine._retired

    def watched_retired(self: Engine, info) -> bool:
        if self._wall is time.time and _changes_after_reference(info.lifecycle):
            met.add(f"{info.name} (emulator on the real wall clock)")
        return retired(self, info)

    monkeypatch.setattr(Engine, "_retired", watched_retired)
    yield
    if met:
        pytest.fail(
            "judged on the real calendar, these lifecycles change after "
            f"{REFERENCE_DAY} (the test would break on that day): {sorted(met)}; pin the day "
            "(tests/dates.py) or use a model with no announced retirement",
            pytrace=False,
        )
