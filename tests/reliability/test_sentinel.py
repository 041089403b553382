"""A sentinel API key used throughout never shows up: logs, Parquet, errors, reprs, Ray logs.

* The shared faulted batch run (sentinel as every provider key, Ray embedded with its own
  ``RAY_TMPDIR``): its stdout/stderr, every file of the output dataset, the ledger and its
  journal (raw bytes and decoded values) and every file Ray wrote (session logs of the
  driver, raylet, GCS and the actor workers).
* In-process :class:`~llm.service.LLMService` calls with the root logger at DEBUG (SDK and
  HTTP client logs included): successes, a stream, and errors of several kinds; the
  ``str``/``repr``/pickle/traceback of each error and the reprs of settings, service,
  executor, adapters and responses.
* The same calls through shared provider actors on the test run's Ray session, the key
  given to the driver only: no actor name, no field of Ray's actor and job tables (what the
  dashboard and ``ray list actors --detail`` show), no answer, error, actor description or
  route table, and no file of the session's logs holds the key.
* Prompt and response text reach the logs only when LLM_LOG_PROMPTS / LLM_LOG_RESPONSES
  say so.
"""

from __future__ import annotations

import json
import logging
import pickle
import traceback
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rel_support import SENTINEL, FaultedRun, files_under, leaks

from llm.config import load_settings
from llm.emulator.server import settings_for
from llm.exceptions import LLMError
from llm.retry import RetryConfig
from llm.service import LLMService

FAST_RETRY = RetryConfig(max_retries=1, initial_delay=0.01, max_delay=0.02, jitter=False)
PROMPT_MARK = "zebra-crossing-PROMPT-MARK-4711"


def test_leak_search_finds_a_planted_key(tmp_path) -> None:
    """The search below is not vacuous: it sees the key in compressed Parquet and logs."""
    table = pa.table({"x": [f"prefix {SENTINEL} suffix" * 3] * 50})
    pq.write_table(table, tmp_path / "planted.parquet", compression="zstd")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "worker.err").write_text(f"header: Bearer {SENTINEL}\n")
    assert len(leaks(SENTINEL, tmp_path)) == 2


def test_batch_run_leaves_no_key_anywhere(faulted_run: FaultedRun) -> None:
    process = faulted_run.process
    assert process.returncode == 0
    assert SENTINEL not in process.stdout and SENTINEL not in process.stderr
    parquet = [p for p in files_under(faulted_run.output, faulted_run.ledger) if p.suffix]
    assert any("_journal" in str(p) for p in parquet), "the journal was written and searched"
    ray_files = list(files_under(faulted_run.ray_tmp))
    worker_logs = [p for p in ray_files if p.name.startswith("worker-") and "logs" in str(p)]
    assert worker_logs, "Ray's session logs were written and searched"
    assert any(b"llm retry" in p.read_bytes() for p in worker_logs), "actor logs included"
    assert leaks(SENTINEL, faulted_run.output, faulted_run.ledger, faulted_run.ray_tmp) == []


def _exception_texts(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts.append(repr(pickle.loads(pickle.dumps(error))))
    texts.append(pickle.dumps(error).decode("latin-1"))
    cause = error.__cause__ or error.__context__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    return texts


async def _calls(service: LLMService) -> tuple[list[str], list[str]]:
    """Run successes and failures; return (texts to search, error type names)."""
    texts: list[str] = []
    for model in ("claude-haiku-4.5", "gpt-6-luna", "gemini-2.5-flash-lite"):
        response = await service.generate(model, [{"role": "user", "content": PROMPT_MARK}])
        texts += [repr(response), str(response), response.model_dump_json()]
    stream = service.generate_stream("gpt-6-luna", [{"role": "user", "content": "stream please"}])
    texts += [chunk async for chunk in stream] + [repr(stream.response)]
    failing = [
        ("gpt-17-ultra", "hello"),
        ("claude-haiku-4.5", "[[emu:fault=500]] hello"),
        ("gpt-6-luna", "[[emu:fault=429]] hello"),
        ("gemini-2.5-flash-lite", "[[emu:fault=503]] hello"),
        ("claude-haiku-4.5", "[[emu:fault=reset]] hello"),
        ("gpt-6-luna", "[[emu:fault=cut]] hello"),
    ]
    kinds = []
    for model, text in failing:
        try:
            await service.generate(model, [{"role": "user", "content": text}], max_tokens=20)
        except LLMError as error:
            kinds.append(type(error).__name__)
            texts += _exception_texts(error)
    try:
        await service.generate("gpt-6-luna", [], max_tokens=20)
    except LLMError as error:
        kinds.append(type(error).__name__)
        texts += _exception_texts(error)
    return texts, kinds


def _adapters(executor: object) -> dict[str, object]:
    """The provider adapters an executor created (EngineExecutor or LocalExecutor)."""
    engines = getattr(executor, "_engines", None)
    if engines is not None:
        return {name: engine.adapter for name, engine in engines.items()}
    return dict(getattr(executor, "_adapters", {}))


async def test_service_calls_and_errors_never_show_the_key(emulator_factory, caplog) -> None:
    emulator = emulator_factory(api_key=SENTINEL)
    settings = settings_for(emulator.base_url, SENTINEL)
    service = LLMService(settings=settings, runtime="local", retry_config=FAST_RETRY)
    caplog.set_level(logging.DEBUG)
    try:
        texts, kinds = await _calls(service)
        adapters = _adapters(service.executor)
        texts += [repr(settings), str(settings), repr(service), repr(service.executor)]
        texts += [repr(adapter) for adapter in adapters.values()]
        texts += [
            repr(vars(engine)) for engine in getattr(service.executor, "_engines", {}).values()
        ]
        texts += [repr(vars(adapter)) for adapter in adapters.values()]
        texts += [str(settings.model_dump()), settings.model_dump_json()]
    finally:
        await service.aclose()
    assert len(adapters) == 3, "the three adapters were created and inspected"
    assert len(kinds) == 7 and len(set(kinds)) >= 5, kinds
    assert caplog.records, "DEBUG logging captured something"
    assert SENTINEL not in caplog.text
    assert [text for text in texts if SENTINEL in text] == []


async def _logged_text(emulator, caplog, environ: dict[str, str]) -> tuple[str, str]:
    root = emulator.base_url
    settings = load_settings(environ={"ANTHROPIC_API_KEY": SENTINEL, **environ}, dotenv_path=None)
    settings = settings.with_overrides(anthropic_base_url=root)
    service = LLMService(settings=settings, runtime="local", enable_cost_tracking=False)
    caplog.clear()
    try:
        response = await service.generate(
            "claude-haiku-4.5", [{"role": "user", "content": PROMPT_MARK}], max_tokens=30
        )
    finally:
        await service.aclose()
    return caplog.text, response.text


async def test_prompts_and_answers_are_logged_only_when_asked(emulator_factory, caplog) -> None:
    """At INFO for every logger. (At DEBUG the SDKs themselves log request bodies.)"""
    emulator = emulator_factory(api_key=SENTINEL)
    caplog.set_level(logging.INFO)
    quiet, answer = await _logged_text(emulator, caplog, {})
    assert "llm call" in quiet, "the call was logged"
    assert PROMPT_MARK not in quiet and answer not in quiet
    loud, answer = await _logged_text(
        emulator, caplog, {"LLM_LOG_PROMPTS": "true", "LLM_LOG_RESPONSES": "true"}
    )
    assert PROMPT_MARK in loud and answer in loud
    assert SENTINEL not in quiet + loud


@pytest.mark.ray
async def test_a_drivers_key_shows_in_no_actor_name_ray_table_or_ray_log(
    ray_session, emulator_factory, tmp_path
) -> None:
    from actors.runtime import Runtime

    ray = ray_session
    emulator = emulator_factory(api_key=SENTINEL)  # only the sentinel is accepted
    ledger = tmp_path / "ledger"
    settings = settings_for(emulator.base_url, SENTINEL).with_overrides(ledger_dir=str(ledger))
    namespace = f"llm-sentinel-{uuid.uuid4().hex[:8]}"
    runtime = Runtime(settings=settings, namespace=namespace, retry_config=FAST_RETRY).start()
    try:
        service = LLMService(settings=settings, executor=runtime.executor())
        try:
            texts, kinds = await _calls(service)  # answers: the key reached every actor
        finally:
            await service.aclose()
        handles = runtime.provider_handles()
        texts += [
            json.dumps(d, default=str) for d in ray.get([h.describe.remote() for h in handles])
        ]
        texts += [repr(s) for s in runtime.provider_stats()]
        texts.append(repr(ray.get(runtime.router().routes.remote())))
        texts += [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
        # The GCS's actor and job tables: every field the dashboard and the state API show
        # (names, runtime envs, repr names, call sites, death causes, entrypoints).
        from ray._private import state

        texts.append(json.dumps(state.actors(), default=str))
        texts.append(json.dumps(state.jobs(), default=str))
        runtime.shutdown()  # commits the ledger
    finally:
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == namespace:
                ray.kill(ray.get_actor(actor["name"], namespace=namespace), no_restart=True)
    assert len(kinds) == 7, kinds
    assert sum("llm-provider-" in text for text in texts) >= 3, "actor names were searched"
    assert [text for text in texts if SENTINEL in text] == []
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    assert any(p.name.startswith("worker-") for p in files_under(logs)), "Ray logs searched"
    assert leaks(SENTINEL, logs, ledger) == []
