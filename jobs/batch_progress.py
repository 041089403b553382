"""Progress display and final summary text of the batch job.

On a terminal, :class:`ProgressBar` draws a live view with ``rich`` (redrawn in place at
most ``1 / min_interval_s`` times a second): a bar of rows done of the total, rows/s, ETA,
spend against the budget, calls in flight, 429s and the cache hit ratio, and a table per
provider (rows ok / failed, 429s, retries, cache hit ratio, spend). When stderr is not a
terminal (CI, ``ray job submit`` logs) it prints the same figures as one plain line every
``plain_interval_s`` seconds. The per-provider figures and calls in flight come from a
:class:`~jobs.batch_live.CallTracker` wrapping the job's calls (optional: without one the
view shows what the :class:`~jobs.batch_core.BatchSummary` knows). In ``--mode batch`` the
run sets :attr:`ProgressBar.batches` (a :class:`~jobs.batch_live.BatchWait`) before each
redraw: the view then leads with the provider batches it waits for (states, rows answered
of rows sent, the time waited, an ETA from the providers' counts, or "within 24 h" while they
report none) and a table of the open batches. :func:`format_summary` is the end-of-job report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from jobs.batch_core import BatchSummary
from jobs.batch_live import BatchWait, CallTracker, LiveStats


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


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


class ProgressBar:
    """Shows rows done, rate, ETA, spend and the live figures while a batch runs."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        total: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = 0.25,
        plain_interval_s: float = 10.0,
        is_tty: bool | None = None,
        tracker: CallTracker | None = None,
        width: int | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.tracker = tracker
        self._clock = clock
        self._start = clock()
        self._last = float("-inf")
        self.is_tty = self.stream.isatty() if is_tty is None else is_tty
        self.interval_s = min_interval_s if self.is_tty else plain_interval_s
        self._width = width
        self._live: Any = None
        #: The provider batches a ``--mode batch`` run waits for (None in online mode).
        self.batches: BatchWait | None = None

    # --- figures ------------------------------------------------------------------------

    @property
    def live_stats(self) -> LiveStats:
        """The tracker's figures (empty without a tracker)."""
        return self.tracker.live if self.tracker is not None else LiveStats()

    def _figures(self, summary: BatchSummary) -> dict[str, Any]:
        elapsed = max(self._clock() - self._start, 1e-9)
        processed = summary.done + summary.skipped_done + summary.duplicates
        rate = summary.done / elapsed
        eta = None
        if self.total and rate > 0:
            eta = max(self.total - processed, 0) / rate
        return {"processed": processed, "rate": rate, "eta": eta}

    def _spend(self, summary: BatchSummary) -> str:
        spend = f"${summary.spend:.4f}"
        if summary.budget_usd is not None:
            spend += f" of ${summary.budget_usd}"
        return spend

    def _batch_line(self, wait: BatchWait) -> str:
        states = ", ".join(f"{n} {s}" for s, n in sorted(wait.states.items())) or "none"
        eta = wait.eta_s
        eta_text = format_duration(eta) if eta is not None else "within 24 h"
        waited = max((b.waited_s for b in wait.open), default=0.0)
        text = (
            f"batches open: {len(wait.open)} ({states}); collected {wait.collected}; "
            f"rows answered {wait.answered:,}/{wait.rows:,}; waited {format_duration(waited)}; "
            f"ETA {eta_text}"
        )
        retried = {path: n for path, n in wait.retried.items() if n}
        if retried:
            text += "; retried " + ", ".join(f"{n} {p}" for p, n in sorted(retried.items()))
        return text

    def line(self, summary: BatchSummary) -> str:
        """The status as one plain line (the non-terminal output)."""
        if self.batches is not None:
            done = f"{summary.done:,}" + (f"/{self.total:,}" if self.total else "")
            failed = f" ({summary.failed:,} failed)" if summary.failed else ""
            return (
                f"{self._batch_line(self.batches)}  | rows written {done}{failed}  "
                f"spend {self._spend(summary)}"
            )
        f = self._figures(summary)
        processed = f["processed"]
        done_text = f"{processed:,}"
        if self.total:
            done_text += f"/{self.total:,} ({100 * processed / self.total:.1f}%)"
        eta = format_duration(f["eta"]) if f["eta"] is not None else "?"
        failed = f"  failed {summary.failed:,}" if summary.failed else ""
        text = (
            f"rows {done_text}{failed}  {f['rate']:.1f} rows/s  ETA {eta}  "
            f"spend {self._spend(summary)}"
        )
        if self.tracker is not None:
            live = self.live_stats
            text += (
                f"  in flight {live.in_flight}  429s {live.rate_limited}"
                f"  cache hit {_ratio(live.cache_hit_ratio)}"
            )
            for name, tally in sorted(live.providers.items()):
                text += (
                    f"  | {name}: {tally.ok:,} ok {tally.failed:,} failed"
                    f" ${tally.cost:.4f} cache {_ratio(tally.cache_hit_ratio)}"
                )
        return text

    def _batch_renderable(self, summary: BatchSummary, wait: BatchWait) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar as Bar
        from rich.table import Table
        from rich.text import Text

        head = Table.grid(padding=(0, 2))
        done = f"{summary.done:,}" + (f" / {self.total:,}" if self.total else "")
        cells: list[Any] = [Text(f"rows written {done}", style="bold")]
        if self.total:
            cells.insert(0, Bar(total=self.total, completed=summary.done, width=30))
        cells.append(Text(f"spend {self._spend(summary)}", style="green"))
        head.add_row(*cells)
        table = Table(box=None, padding=(0, 2), header_style="bold")
        for column in ("provider", "model", "batch", "state", "answered", "waited"):
            table.add_column(column, justify="right" if column == "answered" else "left")
        for batch in wait.open:
            table.add_row(
                batch.provider,
                batch.model,
                batch.batch_id[-16:],
                batch.state,
                f"{batch.answered:,}/{batch.rows:,}",
                format_duration(batch.waited_s),
            )
        return Group(head, Text(self._batch_line(wait)), table)

    def renderable(self, summary: BatchSummary) -> Any:
        """The rich view: a progress line and a table per provider."""
        if self.batches is not None:
            return self._batch_renderable(summary, self.batches)
        from rich.console import Group
        from rich.progress_bar import ProgressBar as Bar
        from rich.table import Table
        from rich.text import Text

        f = self._figures(summary)
        head = Table.grid(padding=(0, 2))
        done = f"{f['processed']:,}" + (f" / {self.total:,}" if self.total else "")
        eta = format_duration(f["eta"]) if f["eta"] is not None else "?"
        cells: list[Any] = [Text(f"rows {done}", style="bold")]
        if self.total:
            cells.insert(0, Bar(total=self.total, completed=f["processed"], width=30))
            cells.append(Text(f"{100 * f['processed'] / self.total:.1f}%"))
        cells += [
            Text(f"{f['rate']:.1f} rows/s"),
            Text(f"ETA {eta}"),
            Text(f"spend {self._spend(summary)}", style="green"),
        ]
        head.add_row(*cells)
        parts: list[Any] = [head]
        live = self.live_stats
        if self.tracker is not None:
            status = Text(
                f"in flight {live.in_flight}   429s {live.rate_limited}   "
                f"cache hit {_ratio(live.cache_hit_ratio)}   failed {summary.failed:,}"
            )
            parts.append(status)
        if live.providers:
            table = Table(box=None, padding=(0, 2), header_style="bold")
            for column in ("provider", "ok", "failed", "in flight", "429s", "retries"):
                table.add_column(column, justify="left" if column == "provider" else "right")
            table.add_column("cache hit", justify="right")
            table.add_column("spend", justify="right")
            for name, tally in sorted(live.providers.items()):
                engine = live.engines.get(name)
                table.add_row(
                    name,
                    f"{tally.ok:,}",
                    f"{tally.failed:,}",
                    str(tally.in_flight),
                    str(engine.rate_limited if engine else tally.rate_limited_rows),
                    str(engine.retries if engine else tally.retries),
                    _ratio(tally.cache_hit_ratio),
                    f"${tally.cost:.4f}",
                )
            parts.append(table)
        return Group(*parts)

    # --- drawing ------------------------------------------------------------------------

    def _live_view(self) -> Any:
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, force_terminal=True, width=self._width)
            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()
        return self._live

    def update(self, summary: BatchSummary, *, force: bool = False) -> None:
        """Redraw if the interval has passed (or ``force``)."""
        now = self._clock()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        if self.is_tty:
            self._live_view().update(self.renderable(summary), refresh=True)
        else:
            self.stream.write(self.line(summary) + "\n")
            self.stream.flush()

    def close(self, summary: BatchSummary) -> None:
        """Draw the final state and end the view."""
        if self.tracker is not None:
            self.tracker.stop()
        self.update(summary, force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None


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
