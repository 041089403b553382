"""``python -m llm.models``: the model list CLI (table and JSON, per provider, per day)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llm.models_cli import main
from llm.registry import load_registry

ROOT = Path(__file__).parents[1]


def run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_json_lists_one_provider_with_prices_status_and_dates(capsys):
    records = json.loads(run(capsys, "--provider", "google", "--json", "--date", "2026-12-02"))
    by_name = {record["model"]: record for record in records}
    assert {record["provider"] for record in records} == {"google"}
    # gemini-2.5-pro/flash retired on 2026-12-01: hidden without --all
    assert "gemini-2.5-pro" not in by_name and "gemini-3-pro-preview" not in by_name
    argon = by_name["gemini-4-argon"]
    assert (argon["input"], argon["output"], argon["cache_read"]) == ("4", "20", "0.2")
    assert argon["prices_effective_from"] == "2026-12-01"
    flash = by_name["gemini-3.8-flash"]
    assert (flash["input"], flash["next_price_change"]) == ("0.75", "2027-01-01")
    assert flash["aliases"] == ["gemini-flash-latest"]
    assert by_name["gemini-2.5-flash-lite"]["status"] == "legacy"
    assert by_name["gemini-3.1-flash-lite"]["retires_on"] == "2027-05-07"


def test_all_includes_retired_models_flagged(capsys):
    records = json.loads(run(capsys, "--all", "--json", "--date", "2026-11-27"))
    by_name = {record["model"]: record for record in records}
    assert len(records) == len(load_registry())
    assert by_name["o4-mini"]["status"] == "retired"
    assert by_name["o4-mini"]["replacement"] == "gpt-5.6-terra"
    assert by_name["claude-haiku-5.5"]["aliases"] == ["claude-haiku-5-5"]
    assert by_name["gpt-6.1-sol"]["cache_write"] == "2.5"


def test_table_has_a_header_and_one_line_per_model(capsys):
    out = run(capsys, "--provider", "anthropic", "--date", "2026-11-27")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["provider", "model", "aliases"]
    sonnet = next(line for line in lines if line.startswith("anthropic  claude-sonnet-4.5 "))
    assert "deprecated" in sonnet and "2026-11-30" in sonnet and "claude-sonnet-5.5" in sonnet
    assert "claude-opus-4.1" not in out  # retired
    assert "models; standard prices in USD per 1M tokens on 2026-11-27" in out


def test_python_dash_m_llm_models_runs():
    done = subprocess.run(
        [sys.executable, "-m", "llm.models", "--provider", "openai", "--date", "2026-11-27"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "gpt-6.1-sol" in done.stdout and "claude" not in done.stdout
    assert "Warning" not in done.stderr
