"""The runtime's Prometheus metrics: one metric set, two backends.

:data:`METRICS` defines every metric (name, kind, labels, help text, histogram buckets); the
README's table is this list. :class:`Metrics` records domain events (a finished call, a retry,
a cache-gate role, a limiter wait, the engine's and the ledger's state) into a backend:

* **Ray** (:class:`RayBackend`, ``ray.util.metrics``) inside Ray worker processes — the
  provider and ledger actors. Ray's metrics agent on every node serves them on the node's
  Prometheus endpoint (``ray.nodes()[i]["MetricsExportPort"]``), named with a ``ray_``
  prefix: ``llm_requests`` there is ``ray_llm_requests_total``.
* **In process** (:class:`PrometheusBackend`, ``prometheus_client``) everywhere else (the
  ``local`` runtime): a registry of this module's own, read with :func:`prometheus_text`,
  :func:`registry` (to add to a collector of yours) or served with :func:`serve_http`.
  Counters there carry the ``_total`` suffix too, so the names match Ray's without ``ray_``.

The backend is chosen once per process (:func:`get_metrics`): ``LLM_METRICS=off`` records
nothing, ``ray`` / ``prometheus`` force one, the default ``auto`` picks Ray inside a Ray
worker and the in-process registry elsewhere. Labels are bounded: provider, account, model
(canonical registry names), status, error type, cache role, token kind, bucket name.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from llm.types import Usage

Kind = Literal["counter", "gauge", "histogram"]

_ENGINE = ("provider", "account")
_CALL = ("provider", "account", "model")

#: Seconds; a limiter wait is usually zero, long ones mean the account is at its limit.
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Seconds from send to last byte, all attempts.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)

#: Breaker states as gauge values.
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

#: The token kinds of ``llm_tokens`` and the :class:`~llm.types.Usage` field of each.
TOKEN_KINDS = {
    "input": "input_tokens",
    "cached": "cached_tokens",
    "cache_write": "cache_write_tokens",
    "output": "output_tokens",
    "reasoning": "reasoning_tokens",
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (without ``_total`` or Ray's ``ray_`` prefix) and labels."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "llm_requests",
            "counter",
            "Finished calls by status (ok, error, replayed, cancelled) and error type",
            (*_CALL, "status", "error_type"),
        ),
        MetricSpec(
            "llm_tokens",
            "counter",
            "Tokens of answered calls by kind (input includes cached and cache_write; "
            "output includes reasoning)",
            (*_CALL, "kind"),
        ),
        MetricSpec("llm_cost_usd", "counter", "Cost of answered calls, USD", _CALL),
        MetricSpec("llm_cache_savings_usd", "counter", "Saved by prompt-cache reads, USD", _CALL),
        MetricSpec("llm_rate_limited", "counter", "429 answers (one per failed attempt)", _CALL),
        MetricSpec(
            "llm_retries", "counter", "Attempts retried, by the error", (*_CALL, "error_type")
        ),
        MetricSpec(
            "llm_cache_gate",
            "counter",
            "Prompt-cache gate entries by role: leader (cold prefix, goes first), follower "
            "(waited for a leader), warm (a hit)",
            (*_CALL, "role"),
        ),
        MetricSpec(
            "llm_request_duration_seconds",
            "histogram",
            "Send to last byte, all attempts",
            (*_CALL, "status"),
            DURATION_BUCKETS,
        ),
        MetricSpec(
            "llm_limiter_wait_seconds",
            "histogram",
            "Time an attempt waited for the rate limiter",
            _ENGINE,
            WAIT_BUCKETS,
        ),
        MetricSpec("llm_in_flight", "gauge", "Calls in progress", _ENGINE),
        MetricSpec("llm_limiter_waiting", "gauge", "Calls waiting for the rate limiter", _ENGINE),
        MetricSpec(
            "llm_headroom", "gauge", "Free share of the tightest rate-limit bucket, 0..1", _ENGINE
        ),
        MetricSpec(
            "llm_bucket_level",
            "gauge",
            "Rate-limit bucket fill (requests or tokens available now)",
            (*_ENGINE, "bucket"),
        ),
        MetricSpec(
            "llm_bucket_capacity",
            "gauge",
            "Rate-limit bucket capacity per minute: the configured or learned limit",
            (*_ENGINE, "bucket"),
        ),
        MetricSpec(
            "llm_breaker_state", "gauge", "Circuit breaker: 0 closed, 1 half-open, 2 open", _ENGINE
        ),
        MetricSpec(
            "llm_ledger_pending_rows",
            "gauge",
            "Journaled ledger rows not yet written to Parquet",
            (),
        ),
        MetricSpec(
            "llm_ledger_lag_seconds",
            "gauge",
            "Age of the oldest journaled row not yet in Parquet (0 when none)",
            (),
        ),
        MetricSpec("llm_ledger_rows_written", "counter", "Ledger rows written to Parquet", ()),
    )
}


class MetricsBackend(Protocol):
    """Where metric values go."""

    def record(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        """Add to a counter, set a gauge or observe a histogram value."""
        ...


class NullBackend:
    """Records nothing (``LLM_METRICS=off``)."""

    def record(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        """Drop the value."""


class PrometheusBackend:
    """``prometheus_client`` metrics in a registry of their own (see :func:`registry`)."""

    def __init__(self, registry: Any = None) -> None:
        import prometheus_client as prom

        self.registry = registry if registry is not None else prom.CollectorRegistry()
        kinds = {"counter": prom.Counter, "gauge": prom.Gauge, "histogram": prom.Histogram}
        self._metrics: dict[str, Any] = {}
        for spec in METRICS.values():
            extra = {"buckets": spec.buckets} if spec.kind == "histogram" else {}
            self._metrics[spec.name] = kinds[spec.kind](
                spec.name, spec.help, spec.labels, registry=self.registry, **extra
            )

        self._children: dict[tuple[str, ...], tuple[Kind, Any]] = {}

    def record(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        """Apply ``value`` to the named metric."""
        spec = METRICS[name]
        values = tuple(labels[key] for key in spec.labels)
        key = (name, *values)
        child = self._children.get(key)
        if child is None:  # ``labels()`` validates and locks: look each series up once
            metric = self._metrics[name]
            child = (spec.kind, metric.labels(*values) if spec.labels else metric)
            self._children[key] = child
        _apply(child[0], child[1], value)


class RayBackend:
    """``ray.util.metrics`` metrics, exported by the node's metrics agent (created lazily)."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _metric(self, spec: MetricSpec) -> Any:
        metric = self._metrics.get(spec.name)
        if metric is None:
            from ray.util import metrics as ray_metrics

            with self._lock:
                metric = self._metrics.get(spec.name)
                if metric is None:
                    if spec.kind == "counter":
                        metric = ray_metrics.Counter(spec.name, spec.help, spec.labels)
                    elif spec.kind == "gauge":
                        metric = ray_metrics.Gauge(spec.name, spec.help, spec.labels)
                    else:
                        metric = ray_metrics.Histogram(
                            spec.name, spec.help, list(spec.buckets), spec.labels
                        )
                    self._metrics[spec.name] = metric
        return metric

    def record(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        """Apply ``value`` to the named metric."""
        spec = METRICS[name]
        tags = {key: labels[key] for key in spec.labels}
        metric = self._metric(spec)
        if spec.kind == "counter":
            metric.inc(value, tags=tags)
        elif spec.kind == "gauge":
            metric.set(value, tags=tags)
        else:
            metric.observe(value, tags=tags)


def _apply(kind: Kind, metric: Any, value: float) -> None:
    if kind == "counter":
        metric.inc(value)
    elif kind == "gauge":
        metric.set(value)
    else:
        metric.observe(value)


class Metrics:
    """Domain events → metric values; one per process (:func:`get_metrics`)."""

    def __init__(self, backend: MetricsBackend) -> None:
        self.backend = backend

    def _add(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        if value > 0:  # counters only grow; Ray rejects a zero increment
            self.backend.record(name, value, labels)

    def call_finished(
        self,
        provider: str,
        account: str,
        model: str,
        *,
        usage: Usage,
        cost_usd: float,
        savings_usd: float,
        latency_s: float,
    ) -> None:
        """An answered (billed) call."""
        labels = {"provider": provider, "account": account, "model": model}
        self._add("llm_requests", 1, {**labels, "status": "ok", "error_type": ""})
        for kind, field in TOKEN_KINDS.items():
            self._add("llm_tokens", getattr(usage, field), {**labels, "kind": kind})
        self._add("llm_cost_usd", cost_usd, labels)
        self._add("llm_cache_savings_usd", savings_usd, labels)
        self.backend.record(
            "llm_request_duration_seconds", max(latency_s, 0.0), {**labels, "status": "ok"}
        )

    def call_failed(
        self, provider: str, account: str, model: str, *, error_type: str, latency_s: float
    ) -> None:
        """A call that failed for good (its last attempt's error)."""
        labels = {"provider": provider, "account": account, "model": model}
        self._add("llm_requests", 1, {**labels, "status": "error", "error_type": error_type})
        if error_type == "RateLimitError":
            self._add("llm_rate_limited", 1, labels)
        self.backend.record(
            "llm_request_duration_seconds", max(latency_s, 0.0), {**labels, "status": "error"}
        )

    def call_replayed(self, provider: str, account: str, model: str) -> None:
        """A batch call answered from the ledger's journal (no provider call, no cost)."""
        labels = {"provider": provider, "account": account, "model": model}
        self._add("llm_requests", 1, {**labels, "status": "replayed", "error_type": ""})

    def call_cancelled(self, provider: str, account: str, model: str) -> None:
        """A call cancelled, or a stream its consumer abandoned, before it finished."""
        labels = {"provider": provider, "account": account, "model": model}
        self._add("llm_requests", 1, {**labels, "status": "cancelled", "error_type": ""})

    def retried(self, provider: str, account: str, model: str, *, error_type: str) -> None:
        """An attempt failed and will be retried."""
        labels = {"provider": provider, "account": account, "model": model}
        self._add("llm_retries", 1, {**labels, "error_type": error_type})
        if error_type == "RateLimitError":
            self._add("llm_rate_limited", 1, labels)

    def cache_role(self, provider: str, account: str, model: str, role: str) -> None:
        """A gated request entered the prompt-cache gate as ``role``."""
        labels = {"provider": provider, "account": account, "model": model, "role": role}
        self._add("llm_cache_gate", 1, labels)

    def limiter_waited(self, provider: str, account: str, seconds: float) -> None:
        """An attempt's rate-limiter reservation took ``seconds``."""
        labels = {"provider": provider, "account": account}
        self.backend.record("llm_limiter_wait_seconds", max(seconds, 0.0), labels)

    def in_flight(self, provider: str, account: str, *, in_flight: int, waiting: int) -> None:
        """Calls in progress and calls waiting for the limiter of one engine."""
        labels = {"provider": provider, "account": account}
        self.backend.record("llm_in_flight", in_flight, labels)
        self.backend.record("llm_limiter_waiting", waiting, labels)

    def engine_state(
        self,
        provider: str,
        account: str,
        *,
        in_flight: int,
        waiting: int,
        headroom: float,
        breaker_state: str,
        levels: Mapping[str, float] | None = None,
        capacities: Mapping[str, float] | None = None,
    ) -> None:
        """Gauges of one engine: load, health and its rate-limit buckets."""
        labels = {"provider": provider, "account": account}
        record = self.backend.record
        self.in_flight(provider, account, in_flight=in_flight, waiting=waiting)
        record("llm_headroom", headroom, labels)
        record("llm_breaker_state", BREAKER_VALUES.get(breaker_state, -1.0), labels)
        for bucket, level in (levels or {}).items():
            record("llm_bucket_level", level, {**labels, "bucket": bucket})
        for bucket, capacity in (capacities or {}).items():
            record("llm_bucket_capacity", capacity, {**labels, "bucket": bucket})

    def ledger_state(self, *, pending_rows: int, lag_s: float) -> None:
        """How far Parquet is behind the journal."""
        self.backend.record("llm_ledger_pending_rows", pending_rows, {})
        self.backend.record("llm_ledger_lag_seconds", max(lag_s, 0.0), {})

    def ledger_written(self, rows: int) -> None:
        """``rows`` ledger rows reached Parquet."""
        self._add("llm_ledger_rows_written", rows, {})


# --- the process's metrics ---------------------------------------------------------------

_lock = threading.Lock()
_metrics: Metrics | None = None
_prometheus: PrometheusBackend | None = None


def _in_ray_worker() -> bool:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    try:
        from ray._private import worker

        return worker.global_worker.mode == worker.WORKER_MODE
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without these names
        return False


def _prometheus_backend() -> PrometheusBackend:
    global _prometheus
    if _prometheus is None:
        _prometheus = PrometheusBackend()
    return _prometheus


def _choose_backend() -> MetricsBackend:
    mode = os.environ.get("LLM_METRICS", "auto").strip().lower() or "auto"
    if mode in ("off", "none", "false", "0"):
        return NullBackend()
    if mode == "ray" or (mode == "auto" and _in_ray_worker()):
        return RayBackend()
    return _prometheus_backend()


def get_metrics() -> Metrics:
    """This process's :class:`Metrics` (backend chosen on first use, see the module doc)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = Metrics(_choose_backend())
    return _metrics


def set_metrics(metrics: Metrics | None) -> None:
    """Replace this process's metrics (``None``: choose again on next use). For tests."""
    global _metrics
    with _lock:
        _metrics = metrics


def registry() -> Any:
    """The in-process ``prometheus_client.CollectorRegistry`` holding the metrics."""
    return _prometheus_backend().registry


def prometheus_text() -> str:
    """The in-process metrics in Prometheus' text exposition format."""
    from prometheus_client import generate_latest

    return generate_latest(registry()).decode()


def prometheus_text_of(metrics: Metrics) -> str:
    """The text exposition of ``metrics`` if it records in process ("" otherwise)."""
    from prometheus_client import generate_latest

    backend = metrics.backend
    return generate_latest(backend.registry).decode() if hasattr(backend, "registry") else ""


def serve_http(port: int = 9464, addr: str = "127.0.0.1") -> Any:
    """Serve the in-process metrics at ``http://addr:port/metrics`` (a daemon thread).

    Returns what ``prometheus_client.start_http_server`` returns (server, thread).
    """
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr, registry=registry())
