"""The fixed calendar of the tests: nothing here reads today's date.

Models retire (``llm/data/models.toml`` lifecycles): a test that calls a model through the
lifecycle check (``LLMService``, the emulator's 404) with the real calendar would start
failing on the model's retirement day. Tests whose subject is the lifecycle, or behaviour
only a retiring model has, judge on :data:`REFERENCE_DAY` instead (``LLMService(today=...)``,
an emulator :class:`~llm.emulator.engine.Engine` with :func:`wall_on`); every other test
names models with no announced retirement. ``tests/conftest.py`` fails a test that judges a
model whose lifecycle changes after :data:`REFERENCE_DAY` on the real calendar, and
``make test-future`` runs the suite a year ahead under libfaketime.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from llm import models
from llm.emulator.engine import EmulatorConfig, Engine
from llm.emulator.server import Emulator
from llm.models import Lifecycle, ModelInfo

#: The day lifecycle-dependent tests judge on (the registry's check date when written).
REFERENCE_DAY = dt.date(2026, 11, 27)


def wall_on(day: dt.date = REFERENCE_DAY) -> Callable[[], float]:
    """A wall clock (epoch seconds) that starts at noon UTC on ``day`` and then ticks with
    the real one, so durations (cache lifetimes) still pass."""
    start = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC).timestamp()
    origin = time.monotonic()
    return lambda: start + (time.monotonic() - origin)


def engine_on(
    config: EmulatorConfig | None = None, day: dt.date = REFERENCE_DAY, **kwargs: object
) -> Engine:
    """An emulator engine that judges model lifecycles on ``day``."""
    return Engine(config or EmulatorConfig(), wall=wall_on(day), **kwargs)  # type: ignore[arg-type]


def emulator_on(
    config: EmulatorConfig | None = None, day: dt.date = REFERENCE_DAY, **kwargs: object
) -> Emulator:
    """``async with emulator_on(config) as emu:``: an emulator living on ``day``."""
    engine = engine_on(config, day, **kwargs)
    return Emulator(engine.config, engine=engine)


class _RealDay(dt.date):
    """A day read from the real calendar (:func:`llm.models.lifecycle_day` without a day)."""


def changes_after_reference(life: Lifecycle) -> bool:
    """Whether ``life``'s status still changes after :data:`REFERENCE_DAY`: judged on the real
    calendar, such a model makes a test fail (or pass) depending on when it runs. Compares
    registry dates with the fixed reference day only, never with today."""
    dates = (life.deprecated_on, life.retires_on)
    return any(day is not None and day > REFERENCE_DAY for day in dates)


@contextmanager
def real_calendar_watch() -> Iterator[set[str]]:
    """Within the block, collect the models whose lifecycle :func:`changes_after_reference`
    and that were judged on the real calendar: :meth:`ModelInfo.status_on` without a day or
    with the day :func:`llm.models.lifecycle_day` read from the clock (the service, registry
    listings, recommendations), and the emulator's retired check on the real wall clock."""
    met: set[str] = set()
    original = models.lifecycle_day

    def tagged_day(today: dt.date | None = None) -> dt.date:
        day = original(today)
        return day if today is not None else _RealDay(day.year, day.month, day.day)

    def watched_status_on(self: ModelInfo, today: dt.date | None = None) -> str:
        real = today is None or isinstance(today, _RealDay)
        if real and changes_after_reference(self.lifecycle):
            met.add(f"{self.name} (retires {self.lifecycle.retires_on})")
        return status_on(self, today)

    def watched_retired(self: Engine, info: ModelInfo) -> bool:
        if self._wall is time.time and changes_after_reference(info.lifecycle):
            met.add(f"{info.name} (emulator on the real wall clock)")
        return retired(self, info)

    status_on, retired = ModelInfo.status_on, Engine._retired
    with pytest.MonkeyPatch.context() as patch:
        for name, module in list(sys.modules.items()):
            if name.startswith("llm") and getattr(module, "lifecycle_day", None) is original:
                patch.setattr(module, "lifecycle_day", tagged_day)
        patch.setattr(ModelInfo, "status_on", watched_status_on)
        patch.setattr(Engine, "_retired", watched_retired)
        yield met
