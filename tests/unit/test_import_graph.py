"""The package's shape: no import cycles among ymsync's modules nor among the Celery side's
(``tasks/``), the library never imports Celery (but for the CLI's one port), and dependencies
between its parts point one way (README "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ymsync"
TASKS = ROOT / "tasks"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every ymsync module ``path`` imports, at any depth (a function-level import is still an edge),
    except under ``if TYPE_CHECKING``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    hit = resolve(alias.name)
                    if hit:
                        found.add(hit)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    stem = ".".join(base + ([child.module] if child.module else []))
                else:
                    stem = child.module or ""
                for alias in child.names:
                    hit = resolve(f"{stem}.{alias.name}") if f"{stem}.{alias.name}" in modules else resolve(stem)
                    if hit:
                        found.add(hit)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return found


def import_graph(*roots: Path) -> dict[str, set[str]]:
    files = {_module_name(p): p for root in (roots or (PACKAGE,)) for p in root.rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, modules) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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

    import sys
    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _is_package_init_edge(a: str, b: str) -> bool:
    # A package's __init__ re-exporting its own submodules is not a cycle between parts (ymsync.cli's
    # commands register on the group its __init__ defines). Not so for tasks/: its __init__ once
    # defined the app its task modules import, so there the edge counts.
    return b.startswith(a + ".") and not a.startswith("tasks")


def _cycles_in(*roots: Path) -> list[list[str]]:
    graph = {a: {b for b in deps if not _is_package_init_edge(a, b)} for a, deps in import_graph(*roots).items()}
    return _cycles(graph)


def test_no_import_cycles_among_ymsync_modules() -> None:
    cycles = _cycles_in(PACKAGE)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycles_among_the_celery_side_and_the_library() -> None:
    cycles = _cycles_in(PACKAGE, TASKS)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_a_cycle_through_the_tasks_package_init_counts() -> None:
    """The old shape (the app defined in tasks/__init__.py, which loads the task modules that import it
    back) is a cycle; the same edge in a ymsync package (cli's group and its commands) is not."""
    old = {"tasks": {"tasks.stocks"}, "tasks.stocks": {"tasks"}}
    kept = {a: {b for b in deps if not _is_package_init_edge(a, b)} for a, deps in old.items()}
    assert _cycles(kept) == [["tasks", "tasks.stocks"]]
    assert _is_package_init_edge("ymsync.cli", "ymsync.cli.push")


def test_tasks_package_init_only_imports() -> None:
    """``tasks/__init__.py`` imports the app and the task modules; the app lives in ``tasks/app.py``."""
    tree = ast.parse((TASKS / "__init__.py").read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    others = [ast.unparse(n).splitlines()[0] for n in body
              if not isinstance(n, (ast.Import, ast.ImportFrom))
              and not (isinstance(n, ast.Assign) and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["__all__"])]
    assert not others, others
    assert "tasks.app" in import_graph(TASKS)["tasks"]


# The one seam: the CLI's port (an interface in ymsync/cli/port.py) finds its Celery implementation here.
CELERY_SEAM = {("ymsync/cli/port.py", "ymsync_celery.tasks.port")}


def _celery_imports() -> set[tuple[str, str]]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                if n.split(".")[0] in {"celery", "kombu", "tasks", "ymsync_celery"}:
                    found.add((str(path.relative_to(ROOT)), n))
    return found


def test_the_library_never_imports_celery() -> None:
    offenders = sorted(_celery_imports() - CELERY_SEAM)
    assert not offenders, "\n".join(f"{path} imports {name}" for path, name in offenders)


def test_the_cli_port_is_the_one_seam_and_it_is_used() -> None:
    assert _celery_imports() == CELERY_SEAM


# Which parts of the package may import which (README "Layout"): a part not listed for another
# may not import it, so dependencies point one way.
# ``files`` (atomic writes) is a leaf every part may use.
ALLOWED = {
    "config": {"config", "files"},
    "store": {"store", "config", "files"},
    "market": {"market", "config", "files"},
}


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_dependencies_point_one_way(part: str) -> None:
    graph = import_graph()
    bad = []
    for module, deps in graph.items():
        if not module.startswith(f"ymsync.{part}"):
            continue
        for dep in deps:
            top = dep.split(".")[1] if dep.count(".") else ""
            if dep != "ymsync" and top not in ALLOWED[part]:
                bad.append(f"{module} imports {dep}")
    assert not bad, "\n".join(bad)


# Modules stay under ~400 lines (a bit of slack for a merge); the ones over it today, each with the
# change that splits it. A module not listed that grows past the limit fails.
MAX_LINES = 420
OVER_TODAY = {
}


def test_modules_stay_small() -> None:
    over = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
            for root in (PACKAGE, TASKS) for p in root.rglob("*.py")}
    too_long = {path: n for path, n in over.items() if n > MAX_LINES and path not in OVER_TODAY}
    assert not too_long, too_long
