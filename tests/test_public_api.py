"""The public surface of ``llm``: exactly these names, each importable and lazy.

A name added to or dropped from ``llm.__all__`` is an API change: update this list on purpose.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import llm

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = [
    "Cost",
    "CostTracker",
    "ImageContent",
    "LLMResponse",
    "LLMService",
    "Message",
    "MessageRole",
    "ModelInfo",
    "RetryConfig",
    "Settings",
    "TextContent",
    "ToolCall",
    "ToolResultContent",
    "Usage",
    "compute_cost",
    "get_best_model_for_task",
    "get_model_info",
    "list_available_models",
    "load_settings",
]


def test_llm_all_is_pinned():
    assert llm.__all__ == PUBLIC
    assert dir(llm) == PUBLIC


def test_every_public_name_resolves():
    for name in PUBLIC:
        assert getattr(llm, name) is not None, name


def test_importing_llm_loads_no_sdk_and_no_runtime():
    script = (
        "import sys, llm; "
        "print(sorted(m for m in ('anthropic', 'openai', 'google.genai', 'pyarrow', 'ray', "
        "'runtime', 'actors', 'jobs') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
