"""The one atomic-write helper: readers see the old file or the whole new one; failures leave no debris."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import ymsync
from ymsync.files import atomic_path, atomic_writer, write_json_atomic


def test_text_writer_replaces_the_file_only_when_the_block_ends(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "rows.csv"  # the folder is created
    with atomic_writer(dest, newline="") as out:
        out.write("a,b\r\nпривет,2\r\n")
        assert not dest.exists()  # nothing visible mid-write
    assert dest.read_bytes() == "a,b\r\nпривет,2\r\n".encode()
    assert [p.name for p in dest.parent.iterdir()] == ["rows.csv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "report.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(dest, "wb", fsync=True) as out:
            out.write(b"half of the new")
            raise RuntimeError("download broke off")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.bin"]


def test_path_form_for_writers_that_want_a_path(tmp_path: Path) -> None:
    dest = tmp_path / "r.zip"
    with atomic_path(dest, fsync=True, suffix=".tmp") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".tmp") and tmp != dest
        tmp.write_bytes(b"PK")
    assert dest.read_bytes() == b"PK" and len(list(tmp_path.iterdir())) == 1


def test_json_keeps_text_readable_and_refuses_unknown_modes(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "s.json", {"склад": 1}, indent=None)
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8")) == {"склад": 1}
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_writer(tmp_path / "x", "a"):
            pass


def test_no_module_but_files_writes_through_its_own_temporary_and_rename() -> None:
    """One helper, used everywhere: a second copy of temp-file-then-rename is a defect."""
    root = Path(ymsync.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "files.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("replace", "rename", "mkstemp", "NamedTemporaryFile"):
                base = node.value
                if node.attr in ("mkstemp", "NamedTemporaryFile") or (isinstance(base, ast.Name) and base.id == "os"):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno} {node.attr}")
    assert offenders == []
