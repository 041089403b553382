"""The package layering: imports point one way, ``jobs`` -> ``actors`` -> ``runtime`` -> ``llm``.

Read from the source (every ``import`` statement, function-local ones included), so a
cycle cannot hide inside a function. The one allowed exception is the service's seam,
:func:`llm.executor.default_executor` (its module docstring says why).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("llm", "runtime", "actors", "jobs")
#: (module file, function) -> the upward imports it may make.
SEAM = {("llm/executor.py", "default_executor"): {"runtime.local", "actors.runtime"}}


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(imported module, enclosing function or None) for every import in ``path``."""
    found: list[tuple[str, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module, function))
            visit(child, function)

    visit(ast.parse(path.read_text(encoding="utf-8")), None)
    return found


def _violations() -> list[str]:
    problems = []
    for rank, package in enumerate(LAYERS):
        above = set(LAYERS[rank + 1 :])
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for module, function in _imports(path):
                if module.split(".")[0] not in above:
                    continue
                if module in SEAM.get((relative, function or ""), set()):
                    continue
                problems.append(f"{relative} ({function or 'module level'}) imports {module}")
    return problems


def test_imports_point_one_way():
    assert _violations() == []


def test_the_check_sees_function_local_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from actors.runtime import Runtime\n", encoding="utf-8")
    assert _imports(sample) == [("actors.runtime", "f")]


@pytest.mark.parametrize("package", ["runtime", "actors", "jobs"])
def test_no_cycle_between_two_modules_of_a_package(package):
    # llm is left out: its provider-batch registry (llm.providers.batch_base) and the
    # models CLI still import back lazily; the runtime and the Ray layer must not.
    graph: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {m for m, _ in _imports(path) if m.startswith(package + ".")}
    pairs = [(a, b) for a, deps in graph.items() for b in deps if a in graph.get(b, set())]
    assert pairs == []


def test_the_in_process_path_does_not_import_pyarrow():
    script = textwrap.dedent(
        """
        import asyncio, sys
        from llm import LLMService, Message, MessageRole
        from llm.config import Settings
        from llm.providers.base import ProviderAdapter, ProviderResult
        from llm.types import Usage
        from runtime.local import EngineExecutor

        class Fake(ProviderAdapter):
            provider = "openai"
            def __init__(self, *args, **kwargs):
                self.settings = Settings()
                self._owns_http_client = False
            async def generate(self, request):
                return ProviderResult(text="ok", usage=Usage(input_tokens=5, output_tokens=2))
            async def stream(self, request):
                yield await self.generate(request)
            async def count_tokens(self, request):
                return 5
            async def aclose(self):
                pass

        async def main():
            executor = EngineExecutor(Settings(), limits={}, adapter_factory=Fake)
            async with LLMService(settings=Settings(), executor=executor) as service:
                messages = [Message(role=MessageRole.USER, content="hi")]
                response = await service.generate(model="gpt-5-mini", messages=messages)
            assert response.text == "ok" and response.cost.total_cost > 0
            print("pyarrow" in sys.modules)

        asyncio.run(main())
        """
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
