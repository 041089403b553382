"""``jobs.batch --mode batch`` with the Ray runtime on (the default): the provider batch APIs
are called from the driver, the answered rows are recorded by the cluster's ledger actor
(journal, then Parquet) like the provider actors' rows, and the output is the same."""

from __future__ import annotations

import asyncio
import json

import pytest

from jobs.batch import build_parser, run_job
from jobs.batch_output import read_output
from llm.emulator.batch_store import batch_service
from llm.emulator.server import settings_for
from runtime.ledger_store import read_ledger

pytestmark = pytest.mark.ray

MODELS = ["claude-haiku-5.5", "gpt-6.1-terra", "gemini-3.8-flash"]


def test_batch_mode_through_the_ray_runtime(ray_session, ray_emulator, tmp_path, capsys):
    source, out, ledger = tmp_path / "in.jsonl", tmp_path / "out", tmp_path / "ledger"
    rows = [{"id": f"r{i}", "model": MODELS[i % 3], "prompt": f"Q {i}?"} for i in range(6)]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    service = batch_service(ray_emulator.engine)
    before, processing = service.created, service.settings.processing_s
    service.settings.processing_s = 0.2
    settings = settings_for(ray_emulator.base_url).with_overrides(ledger_dir=str(ledger))
    args = build_parser().parse_args(
        [str(source), "--output", str(out), "--mode", "batch", "--poll-s", "0.1"]
    )
    try:
        assert args.runtime == "ray"
        assert asyncio.run(run_job(args, settings)) == 0
    finally:
        service.settings.processing_s = processing
        for name in ray_session.util.list_named_actors(all_namespaces=True):
            if name["namespace"] == "llm":
                ray_session.kill(ray_session.get_actor(name["name"], namespace="llm"))
    assert service.created - before == 3  # one batch per provider
    output = read_output(out).to_pylist()
    assert sorted(r["id"] for r in output) == [f"r{i}" for i in range(6)]
    assert {r["status"] for r in output} == {"ok"}
    records = read_ledger(ledger).to_pylist()
    assert sorted(r["row_id"] for r in records) == [f"r{i}" for i in range(6)]
    assert {r["tier"] for r in records} == {"batch"}
    assert (ledger / "_journal").is_dir()  # written by the ledger actor, not in process
    assert "batches submitted: 3" in capsys.readouterr().out
