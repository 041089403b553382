"""Metrics (in-process registry) and OpenTelemetry GenAI spans of engine calls (no Ray)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from llm.config import Settings
from llm.exceptions import InvalidRequestError, RateLimitError
from llm.executor import CallContext
from llm.providers.base import ProviderAdapter, ProviderRequest, ProviderResult, StreamItem
from llm.registry import get_model_info
from llm.retry import RetryConfig
from llm.types import Message, MessageRole, Usage
from runtime import metrics as metrics_module
from runtime.engine import MemoryLedger, ProviderEngine
from runtime.limiter import AccountLimits
from runtime.metrics import METRICS, Metrics, PrometheusBackend, get_metrics
from runtime.telemetry import EngineTelemetry

SONNET = get_model_info("claude-sonnet-4.5")
SECRET_KEY = "sk-ant-secret-key-never-in-a-span"
PROMPT = "What is the capital of the secret land of Zorbia?"
ANSWER = "Zorbia's capital is Quux."
SYSTEM = "You are a terse geographer."
USAGE = Usage(
    input_tokens=1500,
    output_tokens=400,
    cached_tokens=1000,
    cache_write_tokens=200,
    reasoning_tokens=150,
)


def _answer() -> ProviderResult:
    return ProviderResult(
        text=ANSWER,
        usage=USAGE,
        finish_reason="stop",
        raw_finish_reason="end_turn",
        model_version="claude-sonnet-4-5-20250929",
        request_id="msg_01abc",
    )


class ScriptedAdapter(ProviderAdapter):
    """Answers from a script of results and errors; the default answer is ``ANSWER``."""

    provider = "anthropic"

    def __init__(self, script: list | None = None) -> None:
        self.settings = Settings()
        self._owns_http_client = False
        self.script = deque(script or [])

    def _next(self) -> object:
        return self.script.popleft() if self.script else _answer()

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        outcome = self._next()
        await asyncio.sleep(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamItem]:
        outcome = self._next()
        if isinstance(outcome, Exception):
            raise outcome
        yield outcome.text
        yield outcome

    async def count_tokens(self, request: ProviderRequest) -> int:
        return 0

    async def aclose(self) -> None:
        return None


def _request(text: str = PROMPT) -> ProviderRequest:
    return ProviderRequest(
        model=SONNET,
        messages=(
            Message(role=MessageRole.SYSTEM, content=SYSTEM),
            Message(role=MessageRole.USER, content=text),
        ),
        max_tokens=500,
        temperature=0.2,
    )


def _engine(script: list | None = None, *, settings: Settings | None = None, **telemetry):
    settings = settings or Settings(anthropic_api_key=SECRET_KEY)
    engine = ProviderEngine(
        "anthropic",
        settings,
        account="team-a",
        limits=AccountLimits(rpm=600, itpm=1_000_000, otpm=200_000),
        retry_config=RetryConfig(max_retries=2, initial_delay=0.0, max_delay=0.0, jitter=False),
        adapter=ScriptedAdapter(script),
        ledger=MemoryLedger(),
    )
    engine.telemetry = EngineTelemetry("anthropic", "team-a", settings, **telemetry)
    return engine


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _value(samples, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and wanted <= lab)


# --- metrics -------------------------------------------------------------------------------


async def test_metrics_of_calls_in_process():
    backend = PrometheusBackend()
    engine = _engine(
        [RateLimitError("slow down", retry_after_s=0.0), _answer(), InvalidRequestError("bad")],
        metrics=Metrics(backend),
    )
    await engine.execute(_request(), CallContext(request_id="r1"))
    with pytest.raises(InvalidRequestError):
        await engine.execute(_request("second"), CallContext(request_id="r2"))
    engine.stats()

    from prometheus_client import generate_latest

    s = _samples(generate_latest(backend.registry).decode())
    call = {"provider": "anthropic", "account": "team-a", "model": "claude-sonnet-4.5"}
    assert _value(s, "llm_requests_total", status="ok", **call) == 1
    assert _value(s, "llm_requests_total", status="error", error_type="InvalidRequestError") == 1
    assert _value(s, "llm_retries_total", error_type="RateLimitError", **call) == 1
    assert _value(s, "llm_rate_limited_total", **call) == 1
    for kind, expected in [
        ("input", 1500),
        ("cached", 1000),
        ("cache_write", 200),
        ("output", 400),
        ("reasoning", 150),
    ]:
        assert _value(s, "llm_tokens_total", kind=kind, **call) == expected, kind
    (record,) = [r for r in engine.ledger.records if r.request_id == "r1"]
    cost = record.total_cost
    assert _value(s, "llm_cost_usd_total", **call) == pytest.approx(float(cost))
    assert cost > 0
    assert _value(s, "llm_cache_savings_usd_total", **call) > 0
    assert _value(s, "llm_request_duration_seconds_count", status="ok", **call) == 1
    # the 429 attempt, the retried attempt and the failed call each waited for the limiter
    assert _value(s, "llm_limiter_wait_seconds_count", provider="anthropic") == 3
    engine_labels = {"provider": "anthropic", "account": "team-a"}
    assert _value(s, "llm_in_flight", **engine_labels) == 0
    assert _value(s, "llm_breaker_state", **engine_labels) == 0
    assert _value(s, "llm_bucket_capacity", bucket="rpm", **engine_labels) == 600
    assert 0 <= _value(s, "llm_bucket_level", bucket="itpm", **engine_labels) <= 1_000_000
    # every metric of the set is exposed, with the documented labels
    names = {name for name, _ in s}
    for spec in METRICS.values():
        suffix = {"counter": "_total", "gauge": "", "histogram": "_count"}[spec.kind]
        if spec.name.startswith("llm_ledger") or spec.name == "llm_cache_gate":
            continue  # not touched by this engine (ledger actor; no cached prefix)
        assert spec.name + suffix in names, spec.name


async def test_cancelled_stream_counts_and_ends_its_span():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    backend = PrometheusBackend()
    engine = _engine(metrics=Metrics(backend), tracer_provider=provider)
    stream = engine.execute_stream(_request(), CallContext(request_id="r-cut"))
    assert await anext(stream) == ANSWER
    await stream.aclose()  # the consumer walks away
    from prometheus_client import generate_latest

    s = _samples(generate_latest(backend.registry).decode())
    assert _value(s, "llm_requests_total", status="cancelled") == 1
    (span,) = exporter.get_finished_spans()
    assert span.attributes["error.type"] == "Cancelled"
    assert not engine.telemetry._spans


async def test_documented_in_process_call(monkeypatch):
    monkeypatch.setenv("LLM_METRICS", "auto")
    metrics_module.set_metrics(None)
    try:
        assert isinstance(get_metrics().backend, PrometheusBackend)
        engine = ProviderEngine(
            "anthropic",
            Settings(anthropic_api_key=SECRET_KEY),
            account="doc-test",
            adapter=ScriptedAdapter(),
        )
        await engine.execute(_request(), CallContext(request_id="r-doc"))
        text = metrics_module.prometheus_text()
        s = _samples(text)
        assert _value(s, "llm_requests_total", account="doc-test", status="ok") == 1
        assert SECRET_KEY not in text
    finally:
        metrics_module.set_metrics(None)


def test_metrics_off(monkeypatch):
    monkeypatch.setenv("LLM_METRICS", "off")
    metrics_module.set_metrics(None)
    try:
        assert type(get_metrics().backend).__name__ == "NullBackend"
    finally:
        metrics_module.set_metrics(None)


# --- spans ---------------------------------------------------------------------------------


def _tracing():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _all_text(span) -> str:
    parts = [span.name, repr(dict(span.attributes))]
    parts += [repr(dict(event.attributes)) for event in span.events]
    return " ".join(parts)


async def test_genai_span_attributes_and_retry_event():
    provider, exporter = _tracing()
    engine = _engine(
        [RateLimitError("429 for key " + SECRET_KEY, retry_after_s=0.0)],
        metrics=Metrics(PrometheusBackend()),
        tracer_provider=provider,
    )
    ctx = CallContext(request_id="r-span", job_id="job-7", row_id="row-3")
    await engine.execute(_request(), ctx)

    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert span.name == f"chat {SONNET.api_id}"
    assert span.kind.name == "CLIENT"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.system"] == "anthropic"
    assert a["gen_ai.request.model"] == SONNET.api_id
    assert a["gen_ai.request.max_tokens"] == 500
    assert (a["server.address"], a["server.port"]) == ("api.anthropic.com", 443)
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.response.model"] == "claude-sonnet-4-5-20250929"
    assert a["gen_ai.response.id"] == "msg_01abc"
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("end_turn",)
    assert a["gen_ai.usage.input_tokens"] == 1500
    assert a["gen_ai.usage.output_tokens"] == 400
    assert a["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 200
    assert a["gen_ai.usage.reasoning.output_tokens"] == 150
    assert a["llm.attempts"] == 2
    assert a["llm.job_id"] == "job-7" and a["llm.row_id"] == "row-3"
    assert a["llm.cost_usd"] > 0
    (event,) = span.events
    assert event.name == "gen_ai.retry"
    assert event.attributes["error.type"] == "RateLimitError"
    assert event.attributes["llm.attempt"] == 1
    # no text of the prompt, the system prompt or the answer; no key, not even from an error
    text = _all_text(span)
    for secret in (PROMPT, SYSTEM, ANSWER, SECRET_KEY, "Zorbia"):
        assert secret not in text
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a


async def test_failed_call_span_has_error_type_only():
    provider, exporter = _tracing()
    engine = _engine(
        [InvalidRequestError(f"bad request mentioning {PROMPT} and {SECRET_KEY}")],
        metrics=Metrics(PrometheusBackend()),
        tracer_provider=provider,
    )
    with pytest.raises(InvalidRequestError):
        await engine.execute(_request(), CallContext(request_id="r-fail"))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "InvalidRequestError"
    text = _all_text(span) + (span.status.description or "")
    assert PROMPT not in text and SECRET_KEY not in text


async def test_text_only_when_logging_is_on():
    provider, exporter = _tracing()
    settings = Settings(anthropic_api_key=SECRET_KEY, log_prompts=True, log_responses=True)
    engine = _engine(
        settings=settings, metrics=Metrics(PrometheusBackend()), tracer_provider=provider
    )
    await engine.execute(_request(), CallContext(request_id="r-log"))
    (span,) = exporter.get_finished_spans()
    assert PROMPT in span.attributes["gen_ai.input.messages"]
    assert SYSTEM in span.attributes["gen_ai.system_instructions"]
    assert ANSWER in span.attributes["gen_ai.output.messages"]
    assert SECRET_KEY not in _all_text(span)


async def test_streamed_call_span():
    provider, exporter = _tracing()
    engine = _engine(metrics=Metrics(PrometheusBackend()), tracer_provider=provider)
    items = [item async for item in engine.execute_stream(_request(), CallContext(request_id="s"))]
    assert items[0] == ANSWER
    (span,) = exporter.get_finished_spans()
    assert span.attributes["llm.streamed"] is True
    assert span.attributes["gen_ai.usage.output_tokens"] == 400


async def test_no_sdk_no_spans():
    """Without a configured SDK the global provider hands out non-recording spans."""
    engine = _engine(metrics=Metrics(PrometheusBackend()))
    await engine.execute(_request(), CallContext(request_id="r-nosdk"))
    assert not engine.telemetry._spans


async def test_a_call_sent_elsewhere_continues_the_callers_trace():
    """RayExecutor puts the caller's trace context in the call's metadata; the engine resumes it."""
    from runtime.tracing import TRACE_CONTEXT_KEY, with_trace_context

    provider, exporter = _tracing()
    ctx = CallContext(request_id="r-remote")
    assert with_trace_context(ctx) is ctx  # no current span: nothing added
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("driver job") as parent:
        sent = with_trace_context(ctx)
    assert "traceparent" in sent.metadata[TRACE_CONTEXT_KEY]
    engine = _engine(metrics=Metrics(PrometheusBackend()), tracer_provider=provider)
    await engine.execute(_request(), sent)  # outside the parent's context, as in an actor
    call_span = next(s for s in exporter.get_finished_spans() if s.name.startswith("chat"))
    assert call_span.context.trace_id == parent.get_span_context().trace_id
    assert call_span.parent.span_id == parent.get_span_context().span_id


LONG_SYSTEM = "Policy clause number seven applies. " * 300  # over the minimum cacheable prefix


async def test_cache_gate_roles_are_counted():
    backend = PrometheusBackend()
    engine = _engine(metrics=Metrics(backend))
    request = ProviderRequest(
        model=SONNET,
        messages=(
            Message(role=MessageRole.SYSTEM, content=LONG_SYSTEM),
            Message(role=MessageRole.USER, content="question"),
        ),
        max_tokens=100,
        enable_caching=True,
    )
    await engine.execute(request, CallContext(request_id="c1"))  # cold prefix: leader
    await engine.execute(request, CallContext(request_id="c2"))  # warm now
    from prometheus_client import generate_latest

    s = _samples(generate_latest(backend.registry).decode())
    assert _value(s, "llm_cache_gate_total", role="leader") == 1
    assert _value(s, "llm_cache_gate_total", role="warm") == 1


async def test_ledger_actor_reports_its_lag_and_rows_written(tmp_path):
    import datetime as dt

    from actors.ledger_actor import LedgerActor
    from runtime.ledger_store import LedgerRecord

    metrics = Metrics(PrometheusBackend())
    metrics_module.set_metrics(metrics)
    try:
        ledger = LedgerActor(tmp_path, flush_interval_s=3600, poll_interval_s=0.01)
        row = LedgerRecord(
            request_id="L1", job_id="j", ts=dt.datetime.now(dt.UTC), provider="anthropic", model="m"
        )
        await ledger.record([row])
        await asyncio.sleep(0.05)  # a poll round reports the pending row
        s = _samples(metrics_module.prometheus_text_of(metrics))
        assert _value(s, "llm_ledger_pending_rows") == 1
        assert _value(s, "llm_ledger_lag_seconds") >= 0
        await ledger.flush()
        await asyncio.sleep(0.05)
        s = _samples(metrics_module.prometheus_text_of(metrics))
        assert _value(s, "llm_ledger_rows_written_total") == 1
        assert _value(s, "llm_ledger_pending_rows") == 0
        await ledger.aclose()
    finally:
        metrics_module.set_metrics(None)


def test_ledger_writer_pending_age(tmp_path):
    import datetime as dt

    from runtime.ledger_store import LedgerRecord, LedgerWriter

    now = [100.0]
    writer = LedgerWriter(tmp_path, clock=lambda: now[0])
    assert writer.pending_age_s == 0.0
    writer.append(
        [
            LedgerRecord(
                request_id="a", job_id="j", ts=dt.datetime.now(dt.UTC), provider="openai", model="m"
            )
        ]
    )
    now[0] = 103.5
    assert writer.pending_age_s == 3.5
    writer.flush()
    assert writer.pending_age_s == 0.0


def test_server_of_a_configured_base_url():
    from runtime.tracing import server_of

    assert server_of("openai", "http://127.0.0.1:8000/v1") == ("127.0.0.1", 8000)
    assert server_of("google", "https://proxy.example/gemini?key=x") == ("proxy.example", 443)
    assert server_of("google", None) == ("generativelanguage.googleapis.com", 443)


async def test_a_failing_metrics_backend_never_breaks_a_call():
    class Broken:
        def record(self, name, value, labels):
            raise RuntimeError("exporter down")

    engine = _engine([RateLimitError("429", retry_after_s=0.0)], metrics=Metrics(Broken()))
    executed = await engine.execute(_request(), CallContext(request_id="r-broken"))
    assert executed.result.text == ANSWER and executed.attempts == 2
    assert engine.stats().successes == 1
