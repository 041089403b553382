"""The batch job: ``python -m jobs.batch INPUT --output DIR``.

    python -m jobs.batch examples/prompts.jsonl --output out/ --offline
    python -m jobs.batch rows.parquet --output out/ --address auto --concurrency 64 \\
        --budget-usd 25
    python -m jobs.batch rows.jsonl --output out/ --mode batch      # provider batch APIs
    python -m jobs.batch rows.jsonl --output out/ --mode auto --deadline 36h

Reads JSONL or Parquet rows (:mod:`jobs.batch_input`), sends them through
:class:`~llm.service.LLMService` on the Ray runtime (``--address``: a cluster to join;
default: Ray embedded in this process; ``--runtime local`` runs calls in process instead)
and writes a resumable Parquet dataset (:mod:`jobs.batch_output`). ``--offline`` (the
default when no provider key is set and no cluster is joined: a driver joining one without
a key uses the keys of the cluster's environment, see :mod:`runtime.keys`) starts the built-in emulator and points every
provider at it; it is reachable only from this machine. ``--dry-run`` estimates tokens and
cost without calling anything (:mod:`jobs.batch_dryrun`), online and at batch prices. The
engine is :func:`jobs.batch_core.run_batch`; this module only wires it.

``--mode online`` (the default) is the path above. ``--mode batch`` sends every row through
the providers' batch APIs at batch prices (:mod:`jobs.provider_batch`, called from this
driver, also under ``ray job submit``; with the Ray runtime the rows are recorded by the
cluster's ledger actor, :mod:`jobs.batch_ledger`; same output, budget cap and resume; batch
ids journaled so a rerun re-attaches; rows a batch did not answer are retried within the run,
:mod:`jobs.batch_retry`). ``--mode auto`` picks batch when ``--deadline`` (default 24h)
allows the providers' 24-hour window, else online.

Rerunning with the same ``--output`` resumes: ``--job-id`` defaults to an id derived from
the output directory, ids already written are skipped, and calls already billed are
answered from the ledger's journal.

Exit codes: 0 every row done (rows that failed are still done), 2 bad arguments,
3 stopped by ``--budget-usd``, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from jobs.batch_core import BatchConfig, BatchSummary, BudgetGuard, Call, run_batch
from jobs.batch_dryrun import dry_run, format_dry_run, max_cost_or_zero
from jobs.batch_input import RowRequest, count_rows, read_rows
from jobs.batch_live import CallTracker, engine_stats_source
from jobs.batch_output import (
    OutputWriter,
    output_spend,
    retire_retryable,
    scan_done_ids,
    write_summary,
)
from jobs.batch_progress import ProgressBar, format_summary
from jobs.batch_retry import BATCH_WINDOW_S
from llm.config import PROVIDERS, Settings, load_settings
from llm.executor import Executor
from llm.types import LLMResponse

EXIT_OK, EXIT_USAGE, EXIT_BUDGET, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 2, 3, 130, 143


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.batch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("input", type=Path, help="JSONL or Parquet file (or Parquet directory)")
    parser.add_argument("--output", "-o", type=Path, help="output dataset directory")
    parser.add_argument("--offline", action="store_true", help="use the built-in emulator")
    parser.add_argument("--address", default=None, help="Ray cluster to join (auto, ray://…)")
    parser.add_argument("--runtime", choices=("ray", "local"), default="ray")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="upper bound on calls in flight (default: what the accounts' limits need)",
    )
    parser.add_argument("--budget-usd", type=str, default=None, help="spend cap for the job")
    parser.add_argument("--dry-run", action="store_true", help="estimate; call nothing")
    parser.add_argument("--job-id", default=None, help="default: derived from --output")
    parser.add_argument("--flush-rows", type=int, default=500)
    parser.add_argument("--flush-interval-s", type=float, default=5.0)
    parser.add_argument("--mode", choices=("online", "batch", "auto"), default="online")
    parser.add_argument(
        "--deadline",
        default=None,
        help="results needed within (auto mode: default 24h; batch mode: rows a batch did "
        "not answer go online once a new batch no longer fits)",
    )
    parser.add_argument("--poll-s", type=float, default=30.0, help="batch mode: poll interval")
    return parser


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_deadline(text: str) -> float:
    """Seconds from ``90m``, ``24h``, ``2d`` or plain seconds; ``ValueError`` otherwise."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:], None)
    number = raw[:-1] if unit else raw
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"--deadline {text!r}: use e.g. 90m, 24h or 2d") from None
    if value <= 0:
        raise ValueError("--deadline must be positive")
    return value


def resolve_mode(mode: str, deadline: str | None) -> str:
    """``online`` or ``batch``: ``auto`` is batch when the deadline allows 24 hours."""
    if mode != "auto":
        return mode
    return "batch" if parse_deadline(deadline or "24h") >= BATCH_WINDOW_S else "online"


def default_job_id(output: Path) -> str:
    """A stable job id for an output directory, so a rerun resumes the same job."""
    digest = hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:16]
    return f"batch-{digest}"


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _parse_budget(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("--budget-usd must be a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError("--budget-usd must be positive")
    return value


def _check_args(args: argparse.Namespace) -> str | None:
    if not args.input.exists():
        return f"input {args.input} does not exist"
    if args.dry_run:
        return None
    if args.output is None:
        return "--output is required (except with --dry-run)"
    if args.output.exists() and not args.output.is_dir():
        return f"--output {args.output} is not a directory"
    concurrency = 1 if args.concurrency is None else args.concurrency
    if concurrency < 1 or args.flush_rows < 1 or args.flush_interval_s <= 0:
        return "--concurrency, --flush-rows and --flush-interval-s must be positive"
    if args.poll_s <= 0:
        return "--poll-s must be positive"
    try:
        parse_deadline(args.deadline or "24h")
    except ValueError as error:
        return str(error)
    return None


def service_call(service: Any) -> Call:
    """``call`` for :func:`run_batch`: the row's one prepared request
    (:meth:`RowRequest.request`, the same the scheduler and the budget guard read) sent with
    ``service.send``, tagged with the row's idempotency key, job and row (typed fields)."""
    settings = service.settings

    async def call(row: RowRequest) -> LLMResponse:
        request = row.request(
            default_model=settings.default_model, caching_default=settings.enable_caching
        )
        return await service.send(
            request,
            request_id=row.request_id,
            job_id=row.job_id,
            row_id=row.row_id,
            routed_by_task=row.model is None and row.task is not None,
            metadata=row.options.get("metadata", {}),
        )

    return call


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@dataclass
class Wiring:
    """What a run is connected to; :meth:`close` releases it in reverse order."""

    settings: Settings
    executor: Executor | None = None
    runtime: Any = None
    emulator: Any = None
    notes: list[str] = field(default_factory=list)

    async def spent_before(self, job_id: str, output: Path) -> Decimal:
        """The job's spend so far: the ledger's total, or the output's without a runtime."""
        if self.runtime is not None:
            try:
                totals = await _maybe_await(self.runtime.ledger().totals.remote(job_id))
                return Decimal(totals.get("total_cost") or 0)
            except Exception as error:  # a ledger problem must not stop the job
                self.notes.append(f"ledger totals unavailable ({type(error).__name__})")
        return output_spend(output)

    async def ledger_report(self, job_id: str) -> str | None:
        """The ledger's cost report for this job (None without a runtime or ledger)."""
        if self.runtime is None:
            return None
        try:
            await _maybe_await(self.runtime.ledger().flush.remote())
            from jobs.costs import format_report, scan

            # Streamed part by part and filtered to this job: memory does not grow with
            # the ledger (which holds every job ever run).
            return format_report(scan(self.settings.ledger_dir, job_id=job_id), by="model")
        except Exception as error:
            return f"(ledger report unavailable: {type(error).__name__})"

    def release(self, request_ids: list[str]) -> None:
        """The output now holds these rows: the ledger may drop their journaled results."""
        if self.runtime is not None and request_ids:
            self.runtime.ledger().release.remote(request_ids)  # no answer awaited

    def close(self) -> None:
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                self.runtime.shutdown()
        if self.emulator is not None:
            self.emulator.stop()


def _has_provider_key(settings: Settings) -> bool:
    return any(settings.api_key(provider) for provider in PROVIDERS)


def connect(args: argparse.Namespace, settings: Settings) -> Wiring:
    """Start the emulator (offline) and the runtime; the executor calls run on."""
    wiring = Wiring(settings)
    joining = bool(args.address or settings.ray_address) and args.runtime == "ray"
    if args.offline or not (_has_provider_key(settings) or joining):
        from llm.emulator.server import EmulatorConfig, settings_for, start_in_thread

        wiring.emulator = start_in_thread(EmulatorConfig())
        wiring.settings = settings_for(wiring.emulator.base_url, base=settings)
        wiring.notes.append(f"offline: emulator at {wiring.emulator.base_url}")
    if args.runtime == "ray":
        try:
            from actors.runtime import Runtime
        except ImportError:
            wiring.notes.append("the Ray runtime is not available: running calls in process")
        else:
            wiring.runtime = Runtime(args.address, settings=wiring.settings)
            wiring.runtime.start()
            wiring.executor = wiring.runtime.executor()
            return wiring
    from runtime.local import EngineExecutor  # same policies as the actors, in process

    wiring.executor = EngineExecutor(wiring.settings)
    return wiring


@contextlib.contextmanager
def _sigterm_cancels(flag: dict[str, bool]) -> Iterator[None]:
    """While inside, SIGTERM cancels the current task (so the output gets flushed)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def terminate() -> None:
        flag["terminated"] = True
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _open_output(args: argparse.Namespace) -> tuple[str, set[str], OutputWriter]:
    """Job id, ids already done (after retiring transient failures) and the writer."""
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    retired = retire_retryable(output)
    if retired:
        print(f"note: retrying {retired} rows that failed transiently before", file=sys.stderr)
    done_ids = scan_done_ids(output)
    writer = OutputWriter(
        output, flush_rows=args.flush_rows, flush_interval_s=args.flush_interval_s
    )
    return args.job_id or default_job_id(output), done_ids, writer


async def _budget_guard(
    args: argparse.Namespace, wiring: Wiring, job_id: str
) -> BudgetGuard | None:
    limit = _parse_budget(args.budget_usd)
    if limit is None:
        return None
    default_model = wiring.settings.default_model
    return BudgetGuard(
        limit,
        estimate=lambda row: max_cost_or_zero(
            row, default_model=default_model, caching_default=wiring.settings.enable_caching
        ),
        spent_before=await wiring.spent_before(job_id, args.output),
    )


def _online_retry_service(settings: Settings, executor: Executor | None = None) -> Any:
    """The online path for rows a batch did not answer once the deadline leaves no room for
    another batch: ``executor`` (the provider actors with the Ray runtime), else in process
    (same policies as the actors; engines start on first call)."""
    from llm.service import LLMService
    from runtime.local import EngineExecutor

    return LLMService(
        executor=executor or EngineExecutor(settings),
        settings=settings,
        enable_cost_tracking=False,
        offline=False,
    )


async def run_provider_batch_job(
    args: argparse.Namespace, settings: Settings, *, leave_uncarried: bool = False
) -> tuple[int, int]:
    """``--mode batch``: every row through the provider batch APIs (see jobs.provider_batch).
    Returns (exit code, rows left for the online path: ``leave_uncarried`` only)."""
    from jobs.batch_ledger import batch_ledger
    from jobs.provider_batch import ProviderBatchRun

    job_id, done_ids, writer = _open_output(args)
    # The same wiring as online: the emulator when offline, and the Ray runtime (its ledger
    # actor records the batch rows; its provider actors serve online retries) unless
    # --runtime local. The batch APIs are called from this driver (under ray job submit: the
    # entrypoint on the head, with the head's keys).
    wiring = connect(args, settings)
    for note in wiring.notes:
        print(f"note: {note}", file=sys.stderr)
    ledger = batch_ledger(wiring.runtime, wiring.settings.ledger_dir)
    deadline = args.deadline or ("24h" if args.mode == "auto" else None)
    online = _online_retry_service(wiring.settings, wiring.executor) if deadline else None
    run = ProviderBatchRun(
        job_id=job_id,
        output_dir=args.output,
        writer=writer,
        done_ids=done_ids,
        settings=wiring.settings,
        budget_usd=_parse_budget(args.budget_usd),
        spent_before=output_spend(args.output),
        poll_s=args.poll_s,
        ledger=ledger,
        leave_uncarried=leave_uncarried,
        deadline_s=parse_deadline(deadline) if deadline else None,
        online_call=service_call(online) if online is not None else None,
        progress=ProgressBar(total=count_rows(args.input)),
    )
    summary: BatchSummary | None = None
    flag = {"terminated": False}
    try:
        with _sigterm_cancels(flag):
            summary = await run.run(read_rows(args.input))
    except asyncio.CancelledError:
        print("Interrupted: batches in flight are journaled; rerun to re-attach.", file=sys.stderr)
        return EXIT_TERMINATED if flag["terminated"] else EXIT_INTERRUPTED
    finally:
        writer.close()
        ledger.close()
        if online is not None:
            await online.aclose()
        wiring.close()
    write_summary(
        args.output,
        {
            "job_id": job_id,
            "input": str(args.input),
            "mode": "batch",
            **summary.to_dict(),
            "batch_savings_usd": str(run.batch_savings),
        },
    )
    print(format_summary(summary))
    print(f"batches submitted: {run.submitted}; re-attached: {run.reattached}")
    sent = run.retries.sent
    if sent["batch"] or sent["online"]:
        print(f"rows retried in this run: {sent['batch']} in a new batch, {sent['online']} online")
    print(
        f"Savings: batch pricing ${run.batch_savings:.4f} vs online; "
        f"caching ${summary.cache_savings:.4f}"
    )
    if run.uncarried:
        print(f"{run.uncarried} rows too large for a batch: sending them online")
    return (EXIT_BUDGET if summary.budget_stopped else EXIT_OK), run.uncarried


async def run_job(args: argparse.Namespace, settings: Settings) -> int:
    """Run the job described by ``args``; returns the exit code."""
    from llm.service import LLMService

    if resolve_mode(args.mode, args.deadline) == "batch":
        auto = args.mode == "auto"
        code, uncarried = await run_provider_batch_job(args, settings, leave_uncarried=auto)
        if not (auto and uncarried and code == EXIT_OK):
            return code
        # auto: the rows a batch cannot carry go online (rows already done are skipped)

    job_id, done_ids, writer = _open_output(args)
    wiring = connect(args, settings)
    writer.on_flush = wiring.release
    for note in wiring.notes:
        print(f"note: {note}", file=sys.stderr)
    service = LLMService(
        executor=wiring.executor,
        settings=wiring.settings,
        enable_cost_tracking=False,
        offline=False,
    )
    config = BatchConfig(
        job_id=job_id,
        concurrency=args.concurrency,
        caching_default=wiring.settings.enable_caching,
        default_model=wiring.settings.default_model,
        capacity=getattr(wiring.executor, "capacity", None),
    )
    tracker = CallTracker(
        service_call(service), stats=engine_stats_source(wiring.executor, wiring.runtime)
    )
    summary: BatchSummary | None = None
    flag = {"terminated": False}
    try:
        with _sigterm_cancels(flag):
            summary = await run_batch(
                read_rows(args.input),
                call=tracker,
                writer=writer,
                done_ids=done_ids,
                config=config,
                budget=await _budget_guard(args, wiring, job_id),
                progress=ProgressBar(total=count_rows(args.input), tracker=tracker),
            )
    except asyncio.CancelledError:
        print("Interrupted: finished rows were saved; rerun to continue.", file=sys.stderr)
        return EXIT_TERMINATED if flag["terminated"] else EXIT_INTERRUPTED
    finally:
        await tracker.aclose()
        await service.aclose()
        report = await wiring.ledger_report(job_id) if summary is not None else None
        wiring.close()
    write_summary(args.output, {"job_id": job_id, "input": str(args.input), **summary.to_dict()})
    print(format_summary(summary))
    if report:
        print(report)
    # format_summary already said "Budget of $X reached: N rows not started"
    return EXIT_BUDGET if summary.budget_stopped else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    problem = _check_args(args)
    if problem is None:
        try:
            _parse_budget(args.budget_usd)
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        return _usage_error(problem)
    settings = load_settings()
    if args.dry_run:
        from jobs.batch_dryrun import batch_cost_estimates, format_batch_costs

        report = dry_run(read_rows(args.input), default_model=settings.default_model)
        print(format_dry_run(report))
        costs = batch_cost_estimates(read_rows(args.input), default_model=settings.default_model)
        print(f"Online vs batch (mode {resolve_mode(args.mode, args.deadline)}):")
        print(format_batch_costs(costs))
        return EXIT_OK
    try:
        return asyncio.run(run_job(args, settings))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
