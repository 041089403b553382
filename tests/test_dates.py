"""The tests' fixed calendar and the guard against lifecycle time bombs (tests/dates.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from llm.emulator.engine import EmulatorConfig, Engine
from llm.registry import get_model_info, list_available_models
from llm.service import LLMService
from tests.dates import REFERENCE_DAY, engine_on, real_calendar_watch, wall_on

# The watch under test is the autouse guard itself: the guard must not watch these tests too.
pytestmark = pytest.mark.real_calendar


def test_the_watch_flags_only_a_changing_lifecycle_judged_on_the_real_calendar():
    with real_calendar_watch() as met:
        get_model_info("gpt-5").status_on()  # retires 2026-12-11, after the reference day
        get_model_info("claude-sonnet-5.5").status_on()  # no announced retirement
        get_model_info("o4-mini").status_on()  # retired 2026-10-23: stays retired
        get_model_info("gpt-4.1").status_on(REFERENCE_DAY)  # a pinned day
    assert met == {"gpt-5 (retires 2026-12-11)"}


async def test_the_watch_sees_the_service_the_registry_and_the_emulator():
    with real_calendar_watch() as met:
        with pytest.warns(Warning):
            LLMService()._warn_lifecycle(get_model_info("gpt-5-mini"), stacklevel=2)
        LLMService(today=REFERENCE_DAY)._pick_model("gpt-4o", None, None)
        list_available_models(today=REFERENCE_DAY)
        Engine(EmulatorConfig())._retired(get_model_info("o3"))
        engine_on()._retired(get_model_info("gpt-4.1"))
    assert met == {"gpt-5-mini (retires 2026-12-11)", "o3 (emulator on the real wall clock)"}
    with real_calendar_watch() as met:
        list_available_models()  # every model judged on today's date
    assert "gemini-2.5-pro (retires 2026-12-01)" in met


def test_wall_on_starts_at_noon_of_the_day_and_ticks():
    wall = wall_on(dt.date(2027, 1, 15))
    first = wall()
    noon = dt.datetime(2027, 1, 15, 12, tzinfo=dt.UTC).timestamp()
    assert noon <= first < noon + 5 and wall() >= first
