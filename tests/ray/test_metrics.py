"""The actors' metrics reach Ray's Prometheus endpoint (runtime.metrics via ray.util.metrics).

A short job runs through the actors of a provider account with a name of its own, so the
samples this test reads are its own even though the Ray session is shared. Ray's metrics
agent exports every few seconds; the test polls the node's endpoint until the numbers arrive.
"""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest

from jobs.batch_live import engine_stats_source
from llm.service import LLMService
from llm.types import Message, MessageRole
from runtime.limiter import AccountLimits
from runtime.limits_config import AccountSpec

pytestmark = pytest.mark.filterwarnings("ignore::llm.service_checks.ModelLifecycleWarning")

MODEL = "claude-haiku-4.5"


def _metrics_urls(ray) -> list[str]:
    urls = []
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if node.get("Alive") and port:
            urls.append(f"http://{node['NodeManagerAddress']}:{port}/metrics")
    return urls


def _scrape(urls: list[str]) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    samples = []
    for url in urls:
        try:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError:
            continue  # the agent may be restarting; the next round tries again
        for family in text_string_to_metric_families(text):
            samples += [(s.name, s.labels, s.value) for s in family.samples]
    return samples


def _sum(samples, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for n, lab, v in samples if n == name and wanted <= set(lab.items()))


async def test_a_short_jobs_metrics_are_scraped_from_ray(make_runtime, ray_session):
    account = f"metrics-{uuid.uuid4().hex[:8]}"
    limits = AccountLimits(rpm=6000, itpm=2_000_000, otpm=400_000)
    runtime = make_runtime(
        limits={"anthropic": [AccountSpec(provider="anthropic", name=account, limits=limits)]}
    )
    service = LLMService(settings=runtime.settings, executor=runtime.executor())
    try:
        for i in range(3):
            await service.generate(
                model=MODEL,
                messages=[Message(role=MessageRole.USER, content=f"Metrics row {i}")],
                metadata={"job_id": f"job-{account}", "row_id": str(i)},
            )
        # one 429 answered once, then retried
        await service.generate(
            model=MODEL,
            messages=[Message(role=MessageRole.USER, content="Row four [[emu:fault=429,times=1]]")],
        )
    finally:
        await service.aclose()
    ray_session.get(runtime.ledger().flush.remote())
    # the batch job's progress view reads the same engines' counters from the actors
    stats = await engine_stats_source(runtime.executor(), runtime)()
    (mine,) = [s for s in stats if s.account == account]
    assert (mine.successes, mine.rate_limited, mine.in_flight) == (4, 1, 0)

    urls = _metrics_urls(ray_session)
    assert urls, "no node exposes a metrics export port"
    call = {"account": account, "provider": "anthropic", "model": MODEL}
    deadline = time.monotonic() + 90
    while True:
        samples = _scrape(urls)
        done = _sum(samples, "ray_llm_requests_total", status="ok", **call)
        retried = _sum(samples, "ray_llm_retries_total", **call)
        written = _sum(samples, "ray_llm_ledger_rows_written_total")
        if (done >= 4 and retried >= 1 and written >= 4) or time.monotonic() > deadline:
            break
        time.sleep(2)

    assert done == 4
    assert retried == 1
    assert _sum(samples, "ray_llm_rate_limited_total", **call) == 1
    assert _sum(samples, "ray_llm_tokens_total", kind="input", **call) > 0
    assert _sum(samples, "ray_llm_tokens_total", kind="output", **call) > 0
    assert _sum(samples, "ray_llm_cost_usd_total", **call) > 0
    assert _sum(samples, "ray_llm_request_duration_seconds_count", **call) == 4
    engine = {"account": account, "provider": "anthropic"}
    assert _sum(samples, "ray_llm_limiter_wait_seconds_count", **engine) >= 5
    assert 0 < _sum(samples, "ray_llm_bucket_capacity", bucket="rpm", **engine) <= 6000
    assert _sum(samples, "ray_llm_in_flight", **engine) == 0
    assert _sum(samples, "ray_llm_breaker_state", **engine) == 0
    assert written >= 4
