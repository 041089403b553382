"""Progress display and final summary text of the batch job.

On a terminal, :class:`ProgressBar` redraws one stderr line in place (``\\r``) at most
``1 / min_interval_s`` times a second: rows done (of the total when known), rows/s, ETA
and spend. When stderr is not a terminal it prints a plain line every
``plain_interval_s`` seconds instead. :func:`format_summary` is the end-of-job report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

from jobs.batch_core import BatchSummary


def format_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressBar:
    """Shows rows done, rate, ETA and spend while a batch runs."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        total: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = 0.25,
        plain_interval_s: float = 10.0,
        is_tty: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self._clock = clock
        self._start = clock()
        self._last = float("-inf")
        self.is_tty = self.stream.isatty() if is_tty is None else is_tty
        self.interval_s = min_interval_s if self.is_tty else plain_interval_s
        self._drawn = False

    def line(self, summary: BatchSummary) -> str:
        """The status text for ``summary`` at the current time."""
        elapsed = max(self._clock() - self._start, 1e-9)
        processed = summary.done + summary.skipped_done + summary.duplicates
        rate = summary.done / elapsed
        done_text = f"{processed:,}"
        eta = "?"
        if self.total:
            done_text += f"/{self.total:,} ({100 * processed / self.total:.1f}%)"
            if rate > 0:
                eta = format_duration(max(self.total - processed, 0) / rate)
        failed = f"  failed {summary.failed:,}" if summary.failed else ""
        return f"rows {done_text}{failed}  {rate:.1f} rows/s  ETA {eta}  spend ${summary.spend:.4f}"

    def update(self, summary: BatchSummary, *, force: bool = False) -> None:
        """Redraw if the interval has passed (or ``force``)."""
        now = self._clock()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        if self.is_tty:
            self.stream.write("\r\x1b[2K" + self.line(summary))
            self._drawn = True
        else:
            self.stream.write(self.line(summary) + "\n")
        self.stream.flush()

    def close(self, summary: BatchSummary) -> None:
        """Draw the final state and end the line."""
        self.update(summary, force=True)
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def format_summary(summary: BatchSummary) -> str:
    """The end-of-job report."""
    lines = [
        "=" * 64,
        "BATCH SUMMARY",
        "=" * 64,
        f"Rows: {summary.rows_seen:,} read, {summary.ok:,} ok, {summary.failed:,} failed, "
        f"{summary.skipped_done:,} already done, {summary.duplicates:,} duplicate ids skipped",
    ]
    for error_type, count in sorted(summary.failures_by_type.items()):
        lines.append(f"  {error_type}: {count:,}")
    if summary.retryable_failed:
        lines.append(f"  ({summary.retryable_failed:,} transient: a rerun retries them)")
    if summary.not_started:
        lines.append(f"Not started: {summary.not_started:,}")
    lines += [
        f"Tokens: {summary.input_tokens:,} input ({summary.cached_tokens:,} cached), "
        f"{summary.output_tokens:,} output",
        f"Cost: ${summary.cost:.4f} this run"
        + (f", ${summary.spend:.4f} for the job" if summary.spent_before else ""),
        f"Cache savings: ${summary.cache_savings:.4f}",
        f"Wall time: {format_duration(summary.wall_s)}",
    ]
    if summary.budget_stopped and summary.budget_usd is not None:
        lines.append(
            f"Budget of ${summary.budget_usd} reached: {summary.not_started:,} rows not started"
        )
    if summary.interrupted:
        lines.append("Interrupted: finished rows were saved; rerun to continue")
    lines.append("=" * 64)
    return "\n".join(lines)
