"""The import arrows of the tree, read from the source with `ast` (nothing is imported).

Dependencies point one way (DESIGN.md, Layout): sealer -> backend -> otel_audit, and the
`otel-audit` command line (sealer/cli) above them all, the tests and benchmarks above that.
No module imports upward, no project module is imported inside a function (where a reader of
the import block would not see the arrow; in the tests and benchmarks neither), and no two
modules import each other, however indirectly. The offline verifier (otel_audit/offline_cli.py
and what it imports) needs nothing outside the base install.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("otel_audit", "backend", "sealer")
SCRIPTS = ("tests", "bench")  # import the packages; nothing imports them but each other
OFFLINE_VERIFIER = "otel_audit.offline_cli"

# The third-party imports the base install (pyproject.toml `dependencies`) provides: the
# import name and the distribution that brings it.
BASE_IMPORTS = {"cryptography": "cryptography", "google.protobuf": "protobuf",
                "opentelemetry.proto": "opentelemetry-proto", "rfc3161_client": "rfc3161-client"}  # fmt: skip


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (a project module where the name is one)
    line: int
    in_function: bool


def layer(module: str) -> int:
    """0 otel_audit, 1 backend, 2 sealer, 3 the command line: a module may import its own
    layer or a lower one."""
    if module == "sealer.cli" or module.startswith("sealer.cli."):
        return 3
    return PACKAGES.index(module.split(".")[0])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, modules: set[str]) -> list[Import]:
    """Every import in the module, at any depth, each resolved to an absolute module name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(name, alias.name, child.lineno, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in child.names:  # `from pkg import module` imports pkg.module
                    sub = f"{base}.{alias.name}"
                    found.append(Import(name, sub if sub in modules else base, child.lineno, inside))
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def is_project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def all_imports() -> list[Import]:
    modules = project_modules()
    return [i for name, path in modules.items() for i in imports_of(name, path, set(modules))]


def project_graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in project_modules()}
    for i in imports:
        if is_project(i.target) and i.target != i.source:
            graph[i.source].add(i.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def script_imports() -> list[Import]:
    """The imports of the tests and benchmarks: not layered, but read the same way."""
    paths = sorted(p for folder in SCRIPTS for p in (ROOT / folder).rglob("*.py"))
    modules = set(project_modules()) | {module_name(p) for p in paths}
    return [i for p in paths for i in imports_of(module_name(p), p, modules)]


def test_no_project_module_is_imported_inside_a_function() -> None:
    hidden = sorted(
        {
            f"{i.source}:{i.line} imports {i.target}"
            for i in all_imports() + script_imports()
            if i.in_function and i.target.split(".")[0] in (*PACKAGES, *SCRIPTS)
        }
    )
    assert not hidden, "import project modules at the top of the module:\n" + "\n".join(hidden)


def test_no_import_runs_back_up_the_layers() -> None:
    upward = sorted(
        {
            f"{i.source}:{i.line} imports {i.target}"
            for i in all_imports()
            if i.target.split(".")[0] in SCRIPTS
            or (is_project(i.target) and layer(i.target) > layer(i.source))
        }
    )
    assert not upward, "tests -> sealer.cli -> sealer -> backend -> otel_audit only:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    assert cycles(project_graph(all_imports())) == []


def test_the_offline_verifier_imports_only_the_base_install() -> None:
    imports = all_imports()
    reached = closure(project_graph(imports), OFFLINE_VERIFIER)
    assert {m.split(".")[0] for m in reached} == {"otel_audit"}
    assert "otel_audit.sdk" not in reached  # the SDK is the `sdk` extra's
    outside = sorted(
        {
            f"{i.source}:{i.line} imports {i.target}"
            for i in imports
            if i.source in reached
            and not is_project(i.target)
            and i.target.split(".")[0] not in sys.stdlib_module_names
            and not any(i.target == name or i.target.startswith(name + ".") for name in BASE_IMPORTS)
        }
    )
    assert not outside, "the offline verifier needs only the base install:\n" + "\n".join(outside)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["otel-audit-verify"] == f"{OFFLINE_VERIFIER}:main"  # what examiners run
    base = project["dependencies"]
    names = {re.match(r"[A-Za-z0-9._-]+", dep).group(0) for dep in base}  # type: ignore[union-attr]
    assert names == set(BASE_IMPORTS.values())


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycles_finds_each_loop(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_imports_are_resolved_relative_function_local_and_from_packages(tmp_path: Path) -> None:
    """The reader itself: relative imports, `from pkg import module` and imports in functions."""
    store = imports_of("backend.store", ROOT / "backend" / "store.py", set(project_modules()))
    assert "backend.cluster" in {i.target for i in store}  # from .cluster import ...
    probe = tmp_path / "probe.py"
    probe.write_text("from . import native\n\ndef f():\n    from ..otel_audit import errors\n")
    got = imports_of("backend.probe", probe, {"backend.native", "otel_audit.errors"})
    assert [(i.target, i.in_function) for i in got] == [
        ("backend.native", False),
        ("otel_audit.errors", True),
    ]


@pytest.mark.parametrize("package", [*PACKAGES, "sealer.cli"])
def test_each_package_docstring_maps_its_modules(package: str) -> None:
    """The package docstring is the map a newcomer reads first: it names every module."""
    folder = ROOT.joinpath(*package.split("."))
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("__")}
    assert not {m for m in modules if f"`{m}`" not in doc}, doc
