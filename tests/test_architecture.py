"""The layers, held by structure: no import cycle, imports point down, only shells touch time.

Every import in ``src/`` and ``adapters/`` counts — module level, deferred (inside a
function) and ``if TYPE_CHECKING:`` alike — read with :mod:`ast`, so nothing routes
around the rules by importing late. Layers, top to bottom::

    command line  retrypolicy._cli, retrypolicy.__main__
    adapters      retrypolicy_* (every adapter package)
    front door    retrypolicy (the package's __init__: re-exports only)
    services      retrypolicy.batch, retrypolicy.testing
    apply         decorators, shells, storm, stores, instrumentation, clock, runtime;
                  the adapters' options and interpreter (transport._adapter)
    seam          retrypolicy.transport: the machine, the stream check, decoding
    core          everything else

"Everything else" is the point: a new module is core, held to the strictest rule,
until someone decides it belongs higher up and says so in :data:`LAYERS`.

The allow-lists below name today's known violations, each an import edge in a module
being rewritten by someone else; a test fails when an entry no longer exists, so the
lists only ever shrink.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (ROOT / "src", ROOT / "adapters")

# (importer, imported) -> why it is there. Upward imports (a lower layer importing a
# higher one) that exist today in modules owned by others; each makes the layers test
# skip exactly that edge, and the cycle test too.
KNOWN_LAYER_VIOLATIONS: dict[tuple[str, str], str] = {}

# (importer, imported) -> why. Imports that point down (or sideways) but close a cycle
# today, in modules owned by others; the cycle test skips them.
KNOWN_CYCLES: dict[tuple[str, str], str] = {}

# (module, name) -> why. Core and seam modules that touch time today (see CLOCK_NAMES).
KNOWN_CLOCK_USES: dict[tuple[str, str], str] = {}

# Top to bottom. A module belongs to the first layer with a name equal to it or a
# package containing it ("retrypolicy_*": any adapter package); "retrypolicy" alone, or a
# name ending in ".__init__", is that package's __init__ only (a front door that
# re-exports), not its submodules. Anything not matched is core.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # _demo is the `retrypolicy demo` command (moving into _cli/)
    ("command line", ("retrypolicy._cli", "retrypolicy.__main__", "retrypolicy._demo")),
    ("adapters", ("retrypolicy_*",)),
    ("front door", ("retrypolicy",)),
    ("services", ("retrypolicy.batch", "retrypolicy.testing")),
    (
        "apply",
        (
            "retrypolicy._decorators",
            "retrypolicy._shell",
            "retrypolicy._emit",
            "retrypolicy._storm",
            "retrypolicy.stores",
            "retrypolicy.instrumentation",
            "retrypolicy._clock",
            "retrypolicy._runtime",
            # the seam's front door offers the adapters' interpreter, which is a shell
            "retrypolicy.transport.__init__",
            "retrypolicy.transport._adapter",
            # the simulator: one more shell of the attempt machine, on a virtual clock
            "retrypolicy._simulate",
        ),
    ),
    # the attempt machine, the stream check, content decoding: sans-I/O
    ("seam", ("retrypolicy.transport",)),
    ("core", ()),
)
LAYER_NAMES = tuple(name for name, _ in LAYERS)

# Only the clock module and the shells may wait or read time. In core and seam modules:
# no import of these modules (or their submodules) ...
CLOCK_MODULES = frozenset({"time", "asyncio", "threading", "concurrent", "trio", "anyio"})
# ... and no call of a function or method of these names, whoever provides it (an
# injected clock or sleeper included: the core takes `now` as a value).
CLOCK_NAMES = frozenset(
    {
        *("sleep", "wait", "wait_for", "monotonic", "monotonic_ns", "perf_counter"),
        *("perf_counter_ns", "process_time", "time_ns", "now", "utcnow", "today"),
    }
)


class Import(NamedTuple):
    """One import statement's target, and where and how it is made."""

    importer: str
    imported: str
    path: Path
    line: int
    how: str  # "module level", "deferred" or "TYPE_CHECKING"

    def __str__(self) -> str:
        where = self.path.relative_to(ROOT)
        return f"{self.importer} -> {self.imported} ({where}:{self.line}, {self.how})"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of src/ and adapters/: dotted name -> (file, is a package)."""
    found: dict[str, tuple[Path, bool]] = {}
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, how: str) -> Iterator[tuple[ast.AST, str]]:
    """Every node under *node*, with how an import there would be made."""
    for child in ast.iter_child_nodes(node):
        inner = how
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inner = "deferred" if how == "module level" else how
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, how
            for stmt in child.body:
                yield stmt, "TYPE_CHECKING"
                yield from _walk(stmt, "TYPE_CHECKING")
            for stmt in child.orelse:
                yield stmt, how
                yield from _walk(stmt, how)
            continue
        yield child, inner
        yield from _walk(child, inner)


def _known_module(name: str) -> str | None:
    """*name*, or the closest package of ours containing it; None if it is not ours."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(module: str, is_package: bool, node: ast.AST) -> list[str]:
    """The modules an import node (or an ``import_module("...")`` call) imports."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            origin = ".".join([*base, *([node.module] if node.module else [])])
        else:
            origin = node.module or ""
        # `from package import submodule` imports the submodule; other names, the package
        subs = [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in MODULES]
        return subs + ([origin] if len(subs) < len(node.names) else [])
    if (
        isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
        )
    ):
        return [node.args[0].value]
    return []


def _imports(module: str) -> list[Import]:
    """Every import *module* makes, external ones included (as written)."""
    path, is_package = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        Import(module, target, path, getattr(node, "lineno", 0), how)
        for node, how in _walk(tree, "module level")
        for target in _targets(module, is_package, node)
    ]


def _graph() -> dict[str, list[Import]]:
    """Module -> its imports of our own modules (resolved to the module or package)."""
    graph: dict[str, list[Import]] = {}
    for module in MODULES:
        edges = []
        for imp in _imports(module):
            target = _known_module(imp.imported)
            if target is not None and target != module:
                edges.append(imp._replace(imported=target))
        graph[module] = edges
    return graph


GRAPH = _graph()


def layer_of(module: str) -> str:
    """The layer *module* belongs to: the first that names it or a package of it, else core."""
    for layer, names in LAYERS:
        for name in names:
            if name == "retrypolicy" or name.endswith(".__init__"):
                if module == name.removesuffix(".__init__"):
                    return layer
            elif name.endswith("*"):
                if module.split(".", maxsplit=1)[0].startswith(name[:-1]):
                    return layer
            elif module == name or module.startswith(name + "."):
                return layer
    return "core"


def _find_cycle(graph: dict[str, list[Import]]) -> list[Import] | None:
    """One import cycle of *graph* as its edges, or None (iterative depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        nodes = [start]  # the current path; path[i] leads from nodes[i] to nodes[i + 1]
        path: list[Import] = []
        stack: list[Iterator[Import]] = [iter(graph.get(start, []))]
        while stack:
            edge = next(stack[-1], None)
            if edge is None:
                done.add(nodes.pop())
                stack.pop()
                if path:
                    path.pop()
                continue
            target = edge.imported
            if target in nodes:
                return [*path[nodes.index(target) :], edge]
            if target not in done:
                nodes.append(target)
                path.append(edge)
                stack.append(iter(graph.get(target, [])))
    return None


def _without(graph: dict[str, list[Import]], skip: set[tuple[str, str]]) -> dict[str, list[Import]]:
    return {
        module: [e for e in edges if (e.importer, e.imported) not in skip]
        for module, edges in graph.items()
    }


# -- the rules --------------------------------------------------------------------------


def test_the_graph_is_read() -> None:
    """The walk finds every package and every kind of import, so the rules below bite."""
    assert {"retrypolicy", "retrypolicy._sse", "retrypolicy_requests"} <= MODULES.keys()
    edges = {(imp.importer, imp.imported, imp.how) for edges in GRAPH.values() for imp in edges}
    assert {
        ("retrypolicy._known", "retrypolicy._failure", "module level"),
        ("retrypolicy._rules", "retrypolicy._known", "deferred"),
        ("retrypolicy._events", "retrypolicy._policy", "TYPE_CHECKING"),
    } <= edges


def test_no_import_cycle() -> None:
    """No module reaches itself through imports, deferred and TYPE_CHECKING ones included."""
    skip = set(KNOWN_CYCLES) | set(KNOWN_LAYER_VIOLATIONS)
    cycle = _find_cycle(_without(GRAPH, skip))
    if cycle is not None:
        pytest.fail("import cycle:\n  " + "\n  ".join(map(str, cycle)), pytrace=False)


def test_imports_point_down_the_layers() -> None:
    """No module imports one of a higher layer (a new module is core unless LAYERS says so)."""
    upward = [
        f"{imp} — {layer_of(imp.importer)} imports {layer_of(imp.imported)}"
        for edges in GRAPH.values()
        for imp in edges
        if LAYER_NAMES.index(layer_of(imp.imported)) < LAYER_NAMES.index(layer_of(imp.importer))
        and (imp.importer, imp.imported) not in KNOWN_LAYER_VIOLATIONS
    ]
    if upward:
        pytest.fail("imports against the layers:\n  " + "\n  ".join(upward), pytrace=False)


def _clock_uses(module: str) -> list[tuple[str, str]]:
    """(name, where) of every clock module import and clock call in *module*."""
    path, is_package = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node, _how in _walk(tree, "module level"):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        for target in _targets(module, is_package, node):
            top = target.split(".", maxsplit=1)[0]
            if top in CLOCK_MODULES:
                found.append((top, f"{where} imports {target}"))
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else None
            )
            if name in CLOCK_NAMES:
                found.append((name, f"{where} calls {ast.unparse(func)}()"))
    return found


PURE = sorted(m for m in MODULES if layer_of(m) in {"core", "seam"})


@pytest.mark.parametrize("module", PURE)
def test_core_and_seam_never_touch_time(module: str) -> None:
    """Core and seam modules import no time/asyncio/threading and call no sleep, wait or clock."""
    uses = [
        f"{where} ({name})"
        for name, where in _clock_uses(module)
        if (module, name) not in KNOWN_CLOCK_USES
    ]
    if uses:
        pytest.fail(f"{module} ({layer_of(module)}) touches time:\n  " + "\n  ".join(uses))


# -- the rules themselves -----------------------------------------------------------------


LAYER_CASES = [
    ("retrypolicy._cli", "command line"),
    ("retrypolicy.__main__", "command line"),
    ("retrypolicy_requests", "adapters"),
    ("retrypolicy_httpx.httpx2", "adapters"),
    ("retrypolicy", "front door"),
    ("retrypolicy.batch._runner", "services"),
    ("retrypolicy.testing", "services"),
    ("retrypolicy._decorators", "apply"),
    ("retrypolicy.stores._redis", "apply"),
    ("retrypolicy.instrumentation.prometheus", "apply"),
    ("retrypolicy._clock", "apply"),
    ("retrypolicy.transport", "apply"),  # the front door: it offers AttemptLoop
    ("retrypolicy.transport._machine", "seam"),
    ("retrypolicy._policy", "core"),
    ("retrypolicy._sse._monitor", "core"),
    ("retrypolicy.typing", "core"),
    ("retrypolicy._brand_new", "core"),
    ("retrypolicy.new_package._module", "core"),
    ("retrypolicy._clockwork", "core"),
]


@pytest.mark.parametrize(("module", "layer"), LAYER_CASES)
def test_layer_of(module: str, layer: str) -> None:
    """Modules fall in the layer named for them or their package; anything new is core."""
    assert layer_of(module) == layer


def _graph_of(source: dict[str, str]) -> dict[str, list[Import]]:
    return {
        module: [Import(module, t, ROOT, 1, "deferred") for t in targets.split()]
        for module, targets in source.items()
    }


CYCLE_CASES = [
    ({"a": "b", "b": "c", "c": "a"}, ["a", "b", "c", "a"]),
    ({"a": "b", "b": "b2", "b2": "b"}, ["b", "b2", "b"]),
    ({"a": "b c", "b": "c", "c": ""}, None),
    ({"a": "a"}, ["a", "a"]),
]


@pytest.mark.parametrize(("source", "expected"), CYCLE_CASES)
def test_find_cycle(source: dict[str, str], expected: list[str] | None) -> None:
    """The cycle search returns the cycle's path, or None for a graph without one."""
    cycle = _find_cycle(_graph_of(source))
    path = None if cycle is None else [cycle[0].importer, *(e.imported for e in cycle)]
    assert path == expected


IMPORT_CASES = [
    ("import time\n", "time", "module level"),
    ("def f():\n    import time\n", "time", "deferred"),
    ("if TYPE_CHECKING:\n    from time import sleep\n", "time", "TYPE_CHECKING"),
    ("class C:\n    def m(self):\n        import asyncio.events\n", "asyncio.events", "deferred"),
    ("x = importlib.import_module('threading')\n", "threading", "module level"),
    ("from . import _raw\n", "retrypolicy._sse._raw", "module level"),
    ("from .._rules import Kind\n", "retrypolicy._rules", "module level"),
    ("from .. import Policy\n", "retrypolicy", "module level"),
]


@pytest.mark.parametrize(("code", "target", "how"), IMPORT_CASES)
def test_every_kind_of_import_is_seen(code: str, target: str, how: str) -> None:
    """Imports at module level, in functions, under TYPE_CHECKING and by name are all read."""
    tree = ast.parse(code)
    found = [
        (t, h)
        for node, h in _walk(tree, "module level")
        for t in _targets("retrypolicy._sse._head", False, node)
    ]
    assert found == [(target, how)]


# -- the allow-lists only shrink ---------------------------------------------------------


def test_known_violations_still_exist() -> None:
    """Every allow-listed edge is still in the code: a fixed one must leave the list."""
    edges = {(imp.importer, imp.imported) for edges in GRAPH.values() for imp in edges}
    stale = sorted((set(KNOWN_LAYER_VIOLATIONS) | set(KNOWN_CYCLES)) - edges)
    assert stale == [], f"fixed, remove from the allow-lists: {stale}"
    downward = sorted(
        edge
        for edge in KNOWN_LAYER_VIOLATIONS
        if LAYER_NAMES.index(layer_of(edge[1])) >= LAYER_NAMES.index(layer_of(edge[0]))
    )
    assert downward == [], f"not against the layers, move to KNOWN_CYCLES: {downward}"


def test_known_clock_uses_still_exist() -> None:
    """Every allow-listed use of time in core or seam is still in the code."""
    uses = {(module, name) for module in PURE for name, _ in _clock_uses(module)}
    stale = sorted(set(KNOWN_CLOCK_USES) - uses)
    assert stale == [], f"fixed, remove from KNOWN_CLOCK_USES: {stale}"


def _importlinter() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        config: dict[str, object] = tomllib.load(f)["tool"]["importlinter"]
    return config


def test_import_linter_layers_contract_matches() -> None:
    """pyproject's one layers contract ignores exactly the allow-listed upward imports (none)."""
    contracts = _importlinter()["contracts"]
    assert isinstance(contracts, list)
    layered = [c for c in contracts if c["type"] == "layers"]
    assert len(layered) == 1
    entries = layered[0].get("ignore_imports", [])
    ignored = {tuple(e.replace(" ", "").split("->")) for e in entries}
    assert ignored == set(KNOWN_LAYER_VIOLATIONS)


# Libraries of the transports and stores the adapters and shells wrap: core and seam
# modules import none of them, at any depth, so the core imports without them installed.
TRANSPORT_LIBRARIES = frozenset(
    {"requests", "httpx", "httpx2", "urllib3", "aiohttp", "openai", "redis", "prometheus_client"}
)


@pytest.mark.parametrize("module", PURE)
def test_core_and_seam_import_no_transport_library(module: str) -> None:
    """Core and seam modules never import a transport, store or metrics library."""
    found = [
        str(imp) for imp in _imports(module) if imp.imported.split(".")[0] in TRANSPORT_LIBRARIES
    ]
    if found:
        pytest.fail(f"{module} ({layer_of(module)}) imports:\n  " + "\n  ".join(found))
