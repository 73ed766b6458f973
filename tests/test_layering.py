"""The layering the README's Layout section states, enforced by reading every module's imports (AST).

- Engines (``ppzoo.inference``) never import the zoo, the reports, the checks or the case studies.
- The zoo (``ppzoo.models``) never imports the engines, the reports, the checks or ``ppzoo.fit``.
- Data (``ppzoo.data``) and metrics (``ppzoo.metrics``) import neither the engines nor the zoo (nor fit,
  reports, checks or case studies).
- No import cycles between modules, imports inside functions included (``if TYPE_CHECKING:`` imports,
  which never run, are left out).
- Nothing outside a module uses its underscore names, and a private module (``_name.py``) is imported only
  from its own package.
- Every package folder is listed in pyproject.toml, so that a wheel installs it.

A package's ``__init__`` re-exports its modules; a module that imports its own package's ``__init__``
(rather than the sibling that defines the name) is a cycle too.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Source folder -> the package it installs as (pyproject.toml's package-dir).
PACKAGE_DIRS = {
    "ppzoo": ROOT / "ppzoo",
    "ppzoo.models": ROOT / "models",
    "ppzoo.inference": ROOT / "inference",
    "ppzoo.case_studies": ROOT / "case_studies",
}

ENGINES = "ppzoo.inference"
ZOO = "ppzoo.models"
REPORTS = ("ppzoo.report", "ppzoo.checks")
CASE_STUDIES = "ppzoo.case_studies"

#: Layer (module prefix) -> module prefixes it must not import, and why.
FORBIDDEN = {
    ENGINES: ((ZOO, *REPORTS, CASE_STUDIES, "ppzoo.cli", "ppzoo.sweep"), "engines never import the zoo, reports or case studies"),
    ZOO: ((ENGINES, *REPORTS, "ppzoo.fit", "ppzoo.sbc", CASE_STUDIES, "ppzoo.cli", "ppzoo.sweep"),
          "the zoo never imports engines, reports or ppzoo.fit"),
    "ppzoo.data": ((ENGINES, ZOO, *REPORTS, "ppzoo.fit", "ppzoo.sbc", CASE_STUDIES, "ppzoo.cli", "ppzoo.sweep"),
                   "data imports neither the engines nor the zoo"),
    "ppzoo.metrics": ((ENGINES, ZOO, *REPORTS, "ppzoo.fit", "ppzoo.sbc", CASE_STUDIES, "ppzoo.cli", "ppzoo.sweep"),
                      "metrics import neither the engines nor the zoo"),
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the four source folders (nested packages included)."""
    out = {}
    claimed = {path.resolve() for path in PACKAGE_DIRS.values()}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder)
            # A folder that is itself another source folder (ppzoo/models does not exist, but be safe) is skipped.
            if any(parent.resolve() in claimed and parent.resolve() != folder.resolve() for parent in path.parents):
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(module: str, level: int, current: str) -> str:
    if level == 0:
        return module
    base = current if _is_package(current) else current.rsplit(".", 1)[0]
    for _ in range(level - 1):
        base = base.rsplit(".", 1)[0]
    return f"{base}.{module}" if module else base


def _known(name: str) -> str | None:
    """The longest prefix of ``name`` that is one of our modules."""
    while name:
        if name in MODULES:
            return name
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return None


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never run, so no dependency at run time)."""
    skipped = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING"):
            skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
    return skipped


def _imports(name: str) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """(imported module, names taken from it, line) for every import statement that can run, nested ones
    included (imports under ``if TYPE_CHECKING:`` are type hints only and left out)."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name)
                if target:
                    yield target, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, name)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # from ppzoo import fit -> the module ppzoo.fit
                    yield submodule, (), node.lineno
                else:
                    target = _known(base)
                    if target:
                        yield target, (alias.name,), node.lineno


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(name) if target != name} for name in MODULES}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_every_package_folder_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    packages = {name for name in MODULES if _is_package(name)}
    missing = sorted(packages - listed)
    assert not missing, f"package folders missing from pyproject.toml [tool.setuptools] packages: {missing}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_what_they_may(layer):
    banned, rule = FORBIDDEN[layer]
    wrong = [
        f"{name}:{line} imports {target}"
        for name in MODULES if _within(name, layer)
        for target, _, line in _imports(name)
        if any(_within(target, prefix) for prefix in banned)
    ]
    assert not wrong, f"{rule}: " + "; ".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
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
                    out.append(sorted(component))
    return out


def test_no_import_cycles():
    graph = _graph()
    cycles = _cycles(graph)
    described = []
    for component in cycles:
        members = set(component)
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in members]
        described.append(", ".join(edges))
    assert not cycles, "import cycles (imports inside functions count): " + " | ".join(described)


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_uses_another_modules_underscore_names():
    wrong = []
    for name in MODULES:
        tree = ast.parse(MODULES[name].read_text())
        aliases: dict[str, str] = {}  # local name -> our module it is bound to
        for target, taken, line in _imports(name):
            if target == name:
                continue
            package = target.rsplit(".", 1)[0]
            if _private(target.rsplit(".", 1)[-1]) and not _within(name, package):
                wrong.append(f"{name}:{line} imports the private module {target} from outside {package}")
            for attr in taken:
                if _private(attr):
                    wrong.append(f"{name}:{line} imports {target}.{attr}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES:
                        aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else ""
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name)
                for alias in node.names:
                    if f"{base}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and aliases.get(node.value.id) and aliases[node.value.id] != name):
                wrong.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "underscore names used outside their module: " + "; ".join(sorted(set(wrong)))
