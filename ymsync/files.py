"""Small file helpers shared by the library, the sandbox and the tasks.

Every file ymsync writes for someone else to read (exports, reports, snapshots, the sandbox's
state and report files) is written through :func:`atomic_path`: into a temporary file in the
destination's folder, then renamed over it. A rename within one folder is atomic, so a reader
sees the old file or the whole new one, never half of it, and a failed write leaves no debris.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


@contextmanager
def atomic_path(dest: Path | str, *, fsync: bool = False, prefix: str | None = None,
                suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``dest`` that replaces it when the block ends without error.

    For writers that want a path (ZIP and XLSX libraries). ``fsync``: flush the data to disk
    before the rename, for files that must survive a power cut whole (the sandbox's state);
    regenerable outputs skip it. On any error the temporary file is removed and ``dest`` is
    left as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix if prefix is not None else f".{dest.name}.", suffix=suffix,
                                dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(dest: Path | str, mode: str = "w", *, fsync: bool = False, newline: str | None = None,
                  prefix: str | None = None, suffix: str = "") -> Iterator[IO[Any]]:
    """An open file (``"w"``: UTF-8 text, ``"wb"``: bytes) that replaces ``dest`` when the block
    ends without error; see :func:`atomic_path`. Stream into it as you go (CSV rows, downloads)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(dest, fsync=fsync, prefix=prefix, suffix=suffix) as tmp:
        encoding = "utf-8" if mode == "w" else None
        with open(tmp, mode, encoding=encoding, newline=newline) as out:
            yield out


def write_json_atomic(dest: Path, data: Any, *, indent: int | None = 2, fsync: bool = False,
                      separators: tuple[str, str] | None = None) -> None:
    """Write JSON so a reader sees the old file or the whole new one, never half of it."""
    with atomic_writer(dest, fsync=fsync, prefix=".part-") as out:
        json.dump(data, out, ensure_ascii=False, indent=indent, separators=separators)


__all__ = ["atomic_path", "atomic_writer", "write_json_atomic"]
