"""Harness pieces shared by the scenarios: figures, emulators, progress, machine facts.

* :class:`Figure` is one row of the results table: a ratio, its target, the raw numbers,
  or "not measured" with the reason (a number is never made up).
* :class:`ThreadEmulator` is an emulator in a thread of this process that a scenario can
  reset, and *drain* (see :meth:`ThreadEmulator.fresh`); :class:`ProcessEmulator` is one in
  its own process, for the overhead scenario, so that it does not share the client's GIL.
* :class:`Progress` records when each request of a run finished and how many 429 answers
  the emulator had given when the first 10 % of requests were done (the warm-up).
"""

from __future__ import annotations

import math
import os
import platform
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx2

from llm.config import Settings
from llm.emulator.server import EmulatorConfig, EmulatorThread, settings_for, start_in_thread

API_KEY = "emulator-key"
WARMUP_SHARE = 0.10
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    """One measured figure (a row of the table); ``status`` is ``"ok"`` or ``"n/a"``."""

    scenario: str
    contender: str
    ratio: float | None = None
    target: str | None = None
    passed: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def not_measured(scenario: str, contender: str, reason: str, target: str | None = None) -> Figure:
    """A row that says why there is no number."""
    return Figure(scenario, contender, target=target, status="n/a", reason=reason)


def error_text(exc: BaseException, limit: int = 300) -> str:
    """A short, single-line description of ``exc`` for results.json."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:limit]


_scratch: tempfile.TemporaryDirectory[str] | None = None


def scratch_dir(name: str) -> str:
    """A fresh directory under this run's scratch root (removed when the process exits)."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.TemporaryDirectory(prefix="bench-")
    path = Path(tempfile.mkdtemp(prefix=name + "-", dir=_scratch.name))
    return str(path)


def bench_settings(base_url: str, ledger_dir: str | os.PathLike[str]) -> Settings:
    """Settings pointing every provider at the emulator, ledger in ``ledger_dir``."""
    return settings_for(base_url, API_KEY, base=Settings(ledger_dir=str(ledger_dir)))


class ThreadEmulator:
    """An emulator serving from a daemon thread of this process."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._thread: EmulatorThread = start_in_thread(config)

    @property
    def base_url(self) -> str:
        return self._thread.base_url

    def fresh(self, *, drained: bool = False) -> None:
        """Forget all state; with ``drained``, start the API key's buckets empty.

        A fresh account has a full second's burst (and its headers a full minute's
        ``remaining``); draining starts the account *at* its limit (as right after an
        earlier job), so a short run measures the sustained rate. Call
        only while no request is in flight: the buckets are plain attributes of the engine.
        """
        response = httpx2.post(self.base_url + "/_emulator/reset", timeout=10.0)
        response.raise_for_status()
        if drained:
            self._thread.engine.limits.drain(API_KEY)

    def rate_limited(self) -> int:
        """429 answers given since the last reset."""
        return int(self._thread.engine.stats.rate_limited)

    def stats(self) -> dict[str, Any]:
        return dict(self._thread.engine.stats.as_dict())

    def stop(self) -> None:
        self._thread.stop()


#: Emulator flags for scenarios that measure our own cost, not a rate limit: an account so
#: large that the rate-limit headers on every answer (which the runtime obeys) never bind.
UNBOUNDED_ACCOUNT = ["--rpm", "100000000", "--itpm", "100000000000", "--otpm", "100000000000"]


class ProcessEmulator:
    """``python -m llm.emulator`` in a child process (``with`` block), loopback only."""

    def __init__(self, args: list[str], start_timeout_s: float = 20.0) -> None:
        self.args = args
        self.start_timeout_s = start_timeout_s
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ProcessEmulator:
        command = [sys.executable, "-m", "llm.emulator", "--port", "0", *self.args]
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.start_timeout_s)
        line = self._proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http://"):
            self.__exit__()
            raise RuntimeError("the emulator process did not print its URL in time")
        self.base_url = line
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None


class Progress:
    """Finish times of one run, and the 429 count at the end of its warm-up."""

    def __init__(
        self,
        total: int,
        read_429: Callable[[], int],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.total = total
        self.warmup_n = max(1, math.ceil(total * WARMUP_SHARE))
        self._read_429 = read_429
        self._clock = clock
        self.started = clock()
        self.ok_times: list[float] = []
        self.ok_tokens = 0
        self.failed = 0
        self.warmup_429: int | None = None

    @property
    def finished(self) -> int:
        return len(self.ok_times) + self.failed

    def done(self, ok: bool, input_tokens: int = 0) -> None:
        """Record one request that was answered (``ok``) or given up."""
        if ok:
            self.ok_times.append(self._clock() - self.started)
            self.ok_tokens += input_tokens
        else:
            self.failed += 1
        if self.warmup_429 is None and self.finished >= self.warmup_n:
            self.warmup_429 = self._read_429()

    def last_ok_s(self) -> float | None:
        """Seconds from the start to the last answer."""
        return self.ok_times[-1] if self.ok_times else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """Cores, OS, Python and the versions of the packages that matter here."""
    packages = ("anthropic", "openai", "google-genai", "httpx2", "aiohttp", "ray", "litellm")
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in packages},
        "git_commit": _git_commit(),
    }
