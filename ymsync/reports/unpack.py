"""Opening report archives without trusting them.

Report files are ZIPs (CSV/JSON reports) or XLSX workbooks (which are ZIPs too). They come
from a link, so ymsync treats them like any upload: member names may try to climb out of the
target folder (``../``, absolute paths, drive letters), a small file may inflate to gigabytes,
and a million tiny members can exhaust inodes. Every check happens on the central directory
before a byte is inflated, and reads are counted again while inflating, because the sizes the
directory declares are the archive's own claim.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

_CHUNK = 1024 * 1024


class UnsafeArchive(ValueError):
    """The archive was refused; the message says which rule it broke and where."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 1000
    max_unpacked_bytes: int = 2 * 1024 * 1024 * 1024
    # Real report sheets compress roughly 5-20x; thousands is a bomb, not a spreadsheet.
    max_ratio: float = 1000.0


class SafeArchive:
    """A checked ZIP: ``members()`` lists file members, ``open(name)`` reads one with a byte cap."""

    def __init__(self, path: Path, limits: ArchiveLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or ArchiveLimits()
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UnsafeArchive(f"{self.path.name}: not a readable ZIP archive ({exc})") from None
        try:
            self._infos = self._check()
        except BaseException:
            self._zip.close()
            raise
        self._read = 0

    def __enter__(self) -> "SafeArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def _check(self) -> list[zipfile.ZipInfo]:
        infos = self._zip.infolist()
        name = self.path.name
        if len(infos) > self.limits.max_entries:
            raise UnsafeArchive(f"{name}: {len(infos)} entries, at most {self.limits.max_entries} allowed")
        total = 0
        files = []
        for info in infos:
            problem = member_problem(info)
            if problem:
                raise UnsafeArchive(f"{name}: entry {info.filename!r} refused: {problem}")
            if info.is_dir():
                continue
            total += info.file_size
            if total > self.limits.max_unpacked_bytes:
                raise UnsafeArchive(f"{name}: unpacks to more than {self.limits.max_unpacked_bytes} bytes")
            if info.file_size > 1024 * 1024 and info.file_size > self.limits.max_ratio * max(1, info.compress_size):
                raise UnsafeArchive(f"{name}: entry {info.filename!r} inflates {info.file_size // max(1, info.compress_size)}x "
                                    f"(at most {self.limits.max_ratio:g}x allowed)")
            files.append(info)
        return files

    def members(self) -> list[str]:
        return [info.filename for info in self._infos]

    @property
    def unpacked_size(self) -> int:
        return sum(info.file_size for info in self._infos)

    def open(self, member: str) -> IO[bytes]:
        """A binary stream of one member that stops at the archive-wide byte cap."""
        if member not in self.members():
            raise KeyError(member)
        return _Capped(self._zip.open(member), self)

    def extract_all(self, dest: Path) -> list[Path]:
        """Unpack every file member under ``dest``; nothing lands outside it."""
        dest = Path(dest).resolve()
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for info in self._infos:
            target = (dest / info.filename).resolve()
            if dest not in target.parents:  # belt and braces after member_problem
                raise UnsafeArchive(f"{self.path.name}: entry {info.filename!r} would land outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.open(info.filename) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            written.append(target)
        return written

    def _count(self, n: int) -> None:
        self._read += n
        if self._read > self.limits.max_unpacked_bytes:
            raise UnsafeArchive(f"{self.path.name}: unpacked past the cap of {self.limits.max_unpacked_bytes} bytes")


class _Capped(io.RawIOBase):
    def __init__(self, inner: IO[bytes], owner: SafeArchive) -> None:
        self._inner, self._owner = inner, owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        self._owner._count(len(data))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member name or type is unsafe to unpack, or None."""
    raw = info.filename
    if "\x00" in raw:
        return "NUL byte in the name"
    name = raw.replace("\\", "/")  # Windows-made archives use backslashes; treat them as separators
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "path climbs out of the target folder ('..')"
    mode = info.external_attr >> 16
    if mode and (stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)):
        return "not a regular file (symlink or device)"
    return None


def is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(os.fspath(path))


__all__ = ["ArchiveLimits", "SafeArchive", "UnsafeArchive", "member_problem", "is_zip"]
