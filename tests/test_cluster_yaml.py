"""cluster.yaml: a valid Ray cluster-launcher config that installs the project and holds no secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "cluster.yaml").read_text())
RAW = (ROOT / "cluster.yaml").read_text()


def test_required_launcher_sections_present():
    for key in ("cluster_name", "provider", "auth", "available_node_types", "head_node_type"):
        assert key in CONFIG, key
    assert CONFIG["provider"]["type"] in {"aws", "gcp", "azure"}
    assert CONFIG["head_node_type"] in CONFIG["available_node_types"]


def test_workers_autoscale():
    workers = [
        spec
        for name, spec in CONFIG["available_node_types"].items()
        if name != CONFIG["head_node_type"]
    ]
    assert workers, "no worker node type"
    assert all(spec["max_workers"] > spec.get("min_workers", 0) for spec in workers)
    assert CONFIG["max_workers"] >= max(spec["max_workers"] for spec in workers)


def test_head_exposes_llm_head_resource_and_starts_ray():
    head = CONFIG["available_node_types"][CONFIG["head_node_type"]]
    assert head["resources"].get("llm_head") == 1  # provider actors are pinned here
    assert any("ray start --head" in cmd for cmd in CONFIG["head_start_ray_commands"])
    assert any("ray start --address" in cmd for cmd in CONFIG["worker_start_ray_commands"])


def test_project_is_synced_and_installed():
    assert "." in CONFIG["file_mounts"].values()
    assert any("pip install" in cmd and "-e" in cmd for cmd in CONFIG["setup_commands"])
    assert ".env" in CONFIG.get("rsync_exclude", [])  # a local .env with keys is never uploaded


@pytest.mark.parametrize(
    "pattern",
    [
        r"sk-[A-Za-z0-9_\-]{16,}",  # OpenAI / Anthropic style keys
        r"AIza[0-9A-Za-z_\-]{20,}",  # Google API keys
        r"(?i)(api[_-]?key|secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9_\-]{8,}",
        r"AKIA[0-9A-Z]{16}",  # AWS access key ids
    ],
)
def test_holds_no_secret(pattern):
    assert not re.search(pattern, RAW)


def test_no_key_environment_assignment():
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        assert not re.search(rf"{name}\s*[:=]\s*\S", RAW.replace(f'"{name}\\": \\"${name}', ""))
