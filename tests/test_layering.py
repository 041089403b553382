"""The package layering: imports point one way, ``jobs`` -> ``actors`` -> ``runtime`` -> ``llm``.

Read from the source (every ``import`` statement, function-local ones included), so a
cycle cannot hide inside a function. The one allowed exception is the service's seam,
:func:`llm.executor.default_executor` (its module docstring says why). Inside each package
no import cycle of any length is allowed either.
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


def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def _targets(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports, function-local imports included;
    ``from package import submodule`` counts as importing the submodule."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            found.update(submodules & modules or {node.module})
    return found & modules


def _cycles(root: Path, package: str) -> list[list[str]]:
    """The import cycles among the modules of ``package`` (each as its sorted modules: the
    strongly connected components of more than one module)."""
    paths = list((root / package).rglob("*.py"))
    modules = {_module_name(path, root) for path in paths}
    graph = {_module_name(path, root): _targets(path, modules) for path in paths}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return sorted(found)


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_cycle_inside_a_package(package):
    # A CLI depends on what it shows, a per-provider module on its base, never the reverse
    # (e.g. python -m llm.models runs llm/models/__main__.py; the batch adapters are made by
    # llm.providers.factory, not by llm.providers.batch_base).
    assert _cycles(ROOT, package) == []


def test_the_cycle_check_sees_lazy_submodule_and_longer_cycles(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    files = {
        "__init__.py": "",
        "base.py": "def make():\n    from pkg import impl\n    return impl\n",
        "impl.py": "from pkg.base import make\n",
        "other.py": "from pkg import base\n",
        "a.py": "import pkg.b\n",
        "b.py": "from pkg.c import x\n",
        "c.py": "from pkg import a\nx = 1\n",
    }
    for name, text in files.items():
        (package / name).write_text(text, encoding="utf-8")
    assert _cycles(tmp_path, "pkg") == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.base", "pkg.impl"]]


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
