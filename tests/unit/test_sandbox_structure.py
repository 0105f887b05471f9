"""The sandbox's structure: the methods use a public interface (ApiCall), its stores do not import
each other, and the HTTP layer stays small. (How strict it is lives in the other sandbox tests.)"""

from __future__ import annotations

import ast
from pathlib import Path

import ymsync.sandbox

ROOT = Path(ymsync.sandbox.__file__).parent


def _tree(name: str) -> ast.Module:
    return ast.parse((ROOT / f"{name}.py").read_text(encoding="utf-8"))


def _sandbox_imports(name: str) -> set[str]:
    """Every sandbox module ``name`` imports, wherever the import sits (top, function, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("ymsync.sandbox."):
                found.add(node.module.rsplit(".", 1)[1])
            elif node.module == "ymsync.sandbox":
                found |= {alias.name for alias in node.names}
    return found


def _cycle_through(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_method_handlers_reach_no_private_of_another_object() -> None:
    for name in ("campaign", "business"):
        assert "server" not in _sandbox_imports(name), name
        private = [f"{name}.py:{n.lineno} .{n.attr}" for n in ast.walk(_tree(name))
                   if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
                   and not (isinstance(n.value, ast.Name) and n.value.id == "self")]
        assert private == []


def test_stores_and_methods_form_no_import_cycle() -> None:
    graph = {p.stem: _sandbox_imports(p.stem) for p in ROOT.glob("*.py")}
    assert "state" not in graph["business_state"]
    for name in ("state", "business_state", "stock_record", "call", "campaign", "business", "reports"):
        assert _cycle_through(name, graph) is None, name


def test_server_stays_under_400_lines() -> None:
    assert len((ROOT / "server.py").read_text(encoding="utf-8").splitlines()) < 400
