"""The ledger is complete in Parquet when a program that used the Ray runtime ends.

Rows are acknowledged once journaled; the LedgerActor copies them to Parquet in bulk about a
second later. A program that ends without ``aclose()`` / ``Runtime.shutdown()`` (as most
scripts do) would take an embedded Ray, and the LedgerActor with it, down before that copy:
the journal keeps the rows, but Parquet (what DuckDB reads) stays short until some later
start heals it. So every started :class:`~actors.runtime.Runtime` is remembered here, and
one ``atexit`` hook asks each one's LedgerActor to ``flush()`` (journal → Parquet, awaited)
before the interpreter exits. With Ray embedded in the program (its actors end with it), the
hook first waits, up to ``EXIT_DRAIN_S``, for calls still in flight in the provider actors
(e.g. after Ctrl-C) to finish and be journaled, since the provider bills them anyway.

The hook runs on a normal end, on an uncaught exception, on Ctrl-C (``KeyboardInterrupt``
ends the program through the same path), and on SIGTERM: ``ray.init`` in the main thread
makes SIGTERM raise ``SystemExit``, and when Ray was started elsewhere :func:`remember`
installs the same handler if SIGTERM still has its default action. It is registered after
``import ray`` registered Ray's own ``atexit`` shutdown, so it runs first (``atexit`` runs
handlers last-in, first-out). SIGKILL runs nothing; the rows then wait in the journal, and
:func:`runtime.ledger_view.scan_complete` still counts them.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import sys
import threading
from typing import Any

logger = logging.getLogger("llm.runtime")

#: How long the exit hook waits for one ledger flush.
EXIT_FLUSH_TIMEOUT_S = 60.0
#: How long it first waits for calls still in flight in actors that end with this process.
EXIT_DRAIN_S = 10.0

#: Started runtimes by id, held strongly: a script's service is often garbage by exit time.
_runtimes: dict[int, Any] = {}
_registered = False


def remember(runtime: Any) -> None:
    """Flush ``runtime``'s ledger when the interpreter exits (unless forgotten first)."""
    global _registered
    _runtimes[id(runtime)] = runtime
    if not _registered:
        atexit.register(flush_all)
        _registered = True
    _exit_on_sigterm()


def forget(runtime: Any) -> None:
    """``runtime`` was shut down properly: nothing left to do at exit."""
    _runtimes.pop(id(runtime), None)


def flush_all(timeout_s: float = EXIT_FLUSH_TIMEOUT_S) -> int:
    """Flush the ledger of every remembered runtime; return how many were flushed."""
    flushed = 0
    for runtime in list(_runtimes.values()):
        try:
            runtime.flush_ledger(timeout_s, drain_s=EXIT_DRAIN_S)
            flushed += 1
        except Exception as error:  # the actor or Ray is gone: the journal keeps the rows
            logger.warning("ledger flush at exit failed (%s)", type(error).__name__)
    _runtimes.clear()
    return flushed


def _exit_on_sigterm() -> None:
    """Make SIGTERM end the program through ``atexit`` (as ``ray.init`` does in the main
    thread); leaves any handler someone else installed alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(ValueError, OSError):
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _sigterm_exit)


def _sigterm_exit(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)
