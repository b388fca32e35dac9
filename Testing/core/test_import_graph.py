"""The core is layered: the import graph of ``deepseg`` has no cycle, and imports point down the layers.

The graph is read from the source with ``ast`` and holds *every* import: module level, inside
functions (lazy imports) and under ``TYPE_CHECKING``, so a cycle cannot hide behind a lazy import.
An import of ``a.b.c`` also depends on the ``__init__`` of each package it passes through (``a.b``)
unless the importer lives inside that package (Python has already run it then).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "DeepSegExtension"
PACKAGE = "deepseg"


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package ``__init__``)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _absolute(module: str, is_package: bool, level: int, name: "str | None") -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def _known(name: str, modules) -> "str | None":
    """The deepseg module ``name`` refers to (an attribute of a module counts as that module)."""
    while name and name not in modules:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name or None


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the deepseg modules it imports anywhere in its source."""
    modules = module_files(root, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, (path, is_package) in modules.items():
        targets: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, is_package, node.level, node.module) if node.level else node.module or ""
                targets += [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                            for alias in node.names]
        for target in filter(None, (_known(t, modules) for t in targets)):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # the packages passed through, then the module itself
                step = ".".join(parts[:i])
                inside = module == step or module.startswith(step + ".")
                if step in modules and step != module and (step == target or not inside):
                    graph[module].add(step)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def _describe(cycle: list[str], graph: dict[str, set[str]]) -> str:
    return "\n".join(f"  {m} -> {', '.join(sorted(graph[m] & set(cycle)))}" for m in cycle)


# bottom to top; a module belongs to the layer of its longest matching prefix
LAYERS = [
    ("foundation", ["deepseg.errors", "deepseg.volume", "deepseg.progress", "deepseg.version", "deepseg.resources",
                    "deepseg.home"]),
    ("io", ["deepseg.io"]),
    ("engine", [  # windows, device, sliding-window + mirroring runner, array pre/post-processing
        "deepseg.inference", "deepseg.inference.windows", "deepseg.inference.sliding_window",
        "deepseg.inference.device", "deepseg.inference.halo_tiles", "deepseg.inference.preprocess",
        "deepseg.inference.postprocess"]),
    ("models", [  # the model contract, formats, store (id-or-folder resolution); exports, measurements
        "deepseg.models", "deepseg.export", "deepseg.measure"]),
    ("orchestration", [  # run options, model (stage) runs, segment / explain / uncertainty / batch / training, the facade
        "deepseg", "deepseg.options", "deepseg.inference.channels", "deepseg.inference.stages", "deepseg.inference.uncertainty",
        "deepseg.inference.pipeline", "deepseg.explain", "deepseg.training", "deepseg.cohort"]),
    ("interfaces", ["deepseg.cli", "deepseg.__main__"]),
]


def layer_of(module: str) -> int:
    best = max(((len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return best[1]


def test_imports_point_down_the_layers():
    graph = import_graph()
    upward = sorted(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                    for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_deepseg_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["deepseg.inference.pipeline"], "the graph reader found no imports"
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (every import counts, lazy ones too):\n" + "\n\n".join(
        _describe(c, graph) for c in cycles)


def test_cycle_finder_sees_lazy_imports_and_package_inits(tmp_path):
    """The reader must catch a cycle made only of function-level imports and one through a package ``__init__``."""
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n")
    (pkg / "c.py").write_text("from .sub.d import x\n")
    (pkg / "sub" / "__init__.py").write_text("from ..c import y\n")
    (pkg / "sub" / "d.py").write_text("x = 1\n")
    (pkg / "e.py").write_text("import p.sub.d\n")
    graph = import_graph(tmp_path, "p")
    assert sorted(find_cycles(graph)) == [["p.a", "p.b"], ["p.c", "p.sub"]]
    assert graph["p.e"] == {"p.sub", "p.sub.d"}


POSIX_ONLY = {"fcntl", "termios", "pwd", "grp", "resource"}


def test_no_module_needs_a_posix_only_module_to_load():
    """Slicer runs on Windows too: a POSIX-only module may be imported lazily or under ``try``, never as a
    plain module-level import (which would make the whole module fail to load there)."""
    found = []
    for package in (PACKAGE, "deepseg_slicer"):
        for module, (path, _) in module_files(ROOT, package).items():
            for node in ast.parse(path.read_text(), str(path)).body:  # module level, outside try
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                found += [f"{module}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in POSIX_ONLY]
    assert not found, found
