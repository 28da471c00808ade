"""The dependency rule (docs/architecture.md): imports point one way and never form a cycle.

Every module of the `qwq_chat` package is read with `ast` (imports inside functions count too, and
so do `importlib.import_module("qwq_chat...")` strings) and placed in a layer. A module may import
from its own layer or a lower one; the chat app never imports the RL package; there are no cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PARTS = {"app": "qwq_chat.app", "convert": "qwq_chat.convert", "rl_finetune": "qwq_chat.rl_finetune",
         "assets": "qwq_chat.assets"}  # fmt: skip

# Highest first. The most specific prefix decides a module's layer; every module must have one.
LAYERS: list[tuple[str, list[str]]] = [
    ("cli", [
        "qwq_chat.app.cli", "qwq_chat.app.__main__", "qwq_chat.app.cli_options",
        "qwq_chat.app.commands", "qwq_chat.app.sandbox.cli", "qwq_chat.app.serve.cli", "qwq_chat.convert.cli",
        "qwq_chat.rl_finetune.cli", "qwq_chat.rl_finetune.launch", "qwq_chat.app.tool_commands",
    ]),
    ("frontends", [
        "qwq_chat.app.tui", "qwq_chat.app.serve", "qwq_chat.app.ask", "qwq_chat.app.doctor",
        "qwq_chat.app.mcp", "qwq_chat.convert", "qwq_chat.rl_finetune",
    ]),
    ("services", [
        "qwq_chat.app.engines", "qwq_chat.app.tools", "qwq_chat.app.sandbox",
        "qwq_chat.app.system", "qwq_chat.app.hub",
    ]),
    ("core", [
        "qwq_chat.app", "qwq_chat.app.errors", "qwq_chat.app.paths", "qwq_chat.app.assets",
        "qwq_chat.app.events", "qwq_chat.app.messages", "qwq_chat.app.sampling",
        "qwq_chat.app.splitter", "qwq_chat.app.prompt", "qwq_chat.app.store",
        "qwq_chat.app.session", "qwq_chat.app.config", "qwq_chat.app.logs",
        "qwq_chat.app.engine_protocol", "qwq_chat.app.reasoning", "qwq_chat.app.gguf_files",
        "qwq_chat.assets",
    ]),
]  # fmt: skip
# Parts that must not know each other even where the layers would allow it.
FORBIDDEN = [
    ("qwq_chat.app", "qwq_chat.rl_finetune"),  # the chat never imports the RL package
    ("qwq_chat.app", "qwq_chat.convert"),  # nor the converter (the CLI registers both)
    ("qwq_chat.convert", "qwq_chat.rl_finetune"),  # RL exports through convert, not back
]
EXEMPT_FROM_FORBIDDEN = {"qwq_chat.app.cli"}  # the one entry point registers every part


def module_files() -> dict[str, Path]:
    modules = {}
    for folder, package in PARTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The qwq_chat modules `name` imports anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:  # `from a.b import c` where c is not a module
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                add(f"{base}.{alias.name}")
        elif isinstance(node, ast.Constant) and node.value in known:  # import_module("...")
            add(node.value)
    return {t for t in found if t.startswith("qwq_chat.")}


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Upward imports, forbidden pairs and modules without a layer, one line each."""
    problems = []
    for module, targets in sorted(graph.items()):
        own = layer_of(module)
        if own is None:
            problems.append(f"{module} has no layer: add it to LAYERS")
            continue
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs is not None and theirs < own:
                problems.append(
                    f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]}): upward"
                )
            for low, high in FORBIDDEN:
                inside = module == low or module.startswith(low + ".")
                if inside and module not in EXEMPT_FROM_FORBIDDEN and target.startswith(high):
                    problems.append(f"{module} imports {target}: {low} must not use {high}")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def project_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def test_imports_point_one_way() -> None:
    problems = violations(project_graph())
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles(project_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_checker_catches_an_upward_import_a_cycle_and_an_unplaced_module() -> None:
    graph = {
        "qwq_chat.app.session": {"qwq_chat.app.tools.registry"},  # core -> services
        "qwq_chat.app.tools.registry": {"qwq_chat.app.tools.calculator"},
        "qwq_chat.app.tools.calculator": {"qwq_chat.app.tools.registry"},  # a cycle
        "qwq_chat.app.engines.llama_engine": {"qwq_chat.rl_finetune.model"},  # forbidden
        "qwq_chat.somewhere_new": set(),
    }
    problems = violations(graph)
    assert any("session (core) imports qwq_chat.app.tools.registry" in p for p in problems)
    assert any("must not use qwq_chat.rl_finetune" in p for p in problems)
    assert any("somewhere_new has no layer" in p for p in problems)
    assert cycles(graph) == [["qwq_chat.app.tools.calculator", "qwq_chat.app.tools.registry"]]


def test_function_level_imports_and_import_module_strings_count(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import importlib\n"
        "def f():\n    from qwq_chat.app.doctor import check_python\n"
        "importlib.import_module('qwq_chat.convert.cli')\n"
        "from . import paths\n"
    )
    known = {"qwq_chat.app.doctor", "qwq_chat.convert.cli", "qwq_chat.app.paths", "qwq_chat.app.x"}
    found = imports_of("qwq_chat.app.x", source, known)
    assert found == {"qwq_chat.app.doctor", "qwq_chat.convert.cli", "qwq_chat.app.paths"}
