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
import time
from collections.abc import Callable

from llm.emulator.engine import EmulatorConfig, Engine
from llm.emulator.server import Emulator

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
