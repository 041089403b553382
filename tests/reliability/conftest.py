"""Fixtures of the reliability suite: emulators and one faulted batch run.

The faulted batch run (150 rows at a 10 % fault rate, sentinel key) is shared by the
fault test and the leak test, so its Ray start is paid once. The in-process Ray session is
the one ``ray_session`` fixture of ``tests/conftest.py`` (one ``ray.init`` per pytest run).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for ``rel_support``

from rel_support import SHORT_FAULT_ROWS, FaultedRun, run_faulted_batch  # noqa: E402

from llm.emulator.server import EmulatorConfig, EmulatorThread, start_in_thread  # noqa: E402


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorThread]]:
    """Start emulators in threads of this process (stopped at the end of the test)."""
    started: list[EmulatorThread] = []

    def start(**fields: object) -> EmulatorThread:
        thread = start_in_thread(EmulatorConfig(**fields))
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture(scope="session")
def faulted_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultedRun]:
    """The short faulted batch run, shared by test_faults and test_sentinel."""
    run = run_faulted_batch(tmp_path_factory.mktemp("faulted"), SHORT_FAULT_ROWS)
    yield run
    shutil.rmtree(run.ray_tmp, ignore_errors=True)
