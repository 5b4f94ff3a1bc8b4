"""Safe paths under a root folder: the one helper every file access of flow goes through."""

from __future__ import annotations

import os
import re
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .errors import UnsafePath




def safe_join(root: str | os.PathLike, relative: str) -> Path:
    """Join ``relative`` under ``root`` and refuse anything that resolves outside it.

    Real paths are compared (symlinks resolved) with ``commonpath``, never ``abspath``
    prefixes: a symlink planted inside the root cannot lead out of it.
    """
    if "\x00" in relative:
        raise UnsafePath(f"path {relative!r} contains a NUL byte")
    if os.path.isabs(relative):
        raise UnsafePath(f"path {relative!r} is absolute; give a path relative to {os.fspath(root)!r}")
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, relative))
    if os.path.commonpath([real_root, candidate]) != real_root:
        raise UnsafePath(f"path {relative!r} leaves the folder {os.fspath(root)!r}")
    return Path(candidate)


# What is never served from the output folder, even when someone put it there: databases and
# their journals, temporary and partial files, anything hidden.
_NOT_SERVED = re.compile(r"\.(sqlite3?|db|db3|wal|shm|journal|tmp|temp|part|partial|lock|incomplete)$"
                         r"|-(wal|shm|journal)$", re.IGNORECASE)


def servable_file(root: str | os.PathLike, relative: str) -> Path:
    """The output file ``relative`` names under ``root``, if it is one that may be served.

    Refuses (UnsafePath) a path that leaves the root, names a hidden part (``.x``), a database,
    journal or temporary file, or anything that is not a regular file.
    """
    parts = relative.replace("\\", "/").split("/")
    if any(part.startswith(".") for part in parts) or _NOT_SERVED.search(relative):
        raise UnsafePath(f"{relative!r} is not an output file")
    path = safe_join(root, relative)
    try:
        regular = path.is_file()
    except OSError:  # a name too long for the file system, and the like: no such file
        regular = False
    if _NOT_SERVED.search(path.name) or path.name.startswith(".") or not regular:
        raise UnsafePath(f"{relative!r} is not an output file")
    return path


def relative_to(root: str | os.PathLike, path: str | os.PathLike) -> str | None:
    """``path`` relative to ``root`` (POSIX form) when it is a file under it that may be served, else None."""
    try:
        real, real_root = os.path.realpath(path), os.path.realpath(root)
        if os.path.commonpath([real, real_root]) != real_root or not os.path.isfile(real):
            return None
    except (ValueError, OSError):
        return None
    relative = Path(os.path.relpath(real, real_root)).as_posix()
    return relative if servable_name(relative) else None


def servable_name(relative: str) -> bool:
    """The rule of :func:`servable_file` on a relative POSIX path: no hidden part, database or temporary file."""
    return not (any(part.startswith(".") for part in relative.split("/")) or _NOT_SERVED.search(relative))


_PREFIX = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,99}(/[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,99}){0,7}$")


class OutputFiles:
    """Allocates new files under the output folder, never overwriting one."""

    __slots__ = ("root", "_next", "_lock", "_real_root", "_written")

    #: files written by save nodes remembered as written (:meth:`wrote`), at most
    WRITTEN_KEEP = 1024

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._next: dict[tuple[Path, str], int] = {}  # next counter per (base, suffix): no rescans
        self._lock = threading.Lock()
        self._real_root: str | None = None  # the root with its symlinks resolved, once
        self._written: OrderedDict[str, tuple[int, int, int]] = OrderedDict()  # path -> its stat (wrote())

    def wrote(self, path: str | os.PathLike) -> None:
        """Remember ``path`` as it is now, just written (the latest WRITTEN_KEEP are kept): :meth:`unchanged`."""
        path = os.fspath(path)
        try:
            found = os.stat(path)
        except OSError:
            return
        with self._lock:
            self._written[path] = (found.st_ino, found.st_size, found.st_mtime_ns)
            self._written.move_to_end(path)
            while len(self._written) > self.WRITTEN_KEEP:
                self._written.popitem(last=False)

    def unchanged(self, path: Any) -> bool:
        """True when ``path`` is a file :meth:`wrote` remembers and it is still as written: not removed,
        replaced or changed since (same inode, size and modification time)."""
        if not isinstance(path, str):
            return False
        with self._lock:
            noted = self._written.get(path)
            if noted is None:
                return False
            self._written.move_to_end(path)
        try:
            found = os.stat(path)
        except OSError:
            return False
        return stat.S_ISREG(found.st_mode) and (found.st_ino, found.st_size, found.st_mtime_ns) == noted

    def _base(self, prefix: str) -> Path:
        """``prefix`` under the root, checked as :func:`safe_join` does at the cost of one lstat a folder.

        The root is resolved once; then only the prefix's own folders are looked at (the prefix has
        no '.' or '..' part: _PREFIX): a symlink among them is resolved and checked by safe_join.
        """
        real_root = self._real_root
        if real_root is None:
            real_root = self._real_root = os.path.realpath(self.root)
        folder = real_root
        for part in prefix.split("/")[:-1]:
            folder = os.path.join(folder, part)
            if os.path.islink(folder):
                return safe_join(real_root, prefix)
        return Path(os.path.join(real_root, prefix))

    def new_path(self, prefix: str, suffix: str) -> Path:
        """Create and return a fresh file ``<prefix>_00001<suffix>`` (counter bumped until free).

        ``prefix`` may name sub-folders (``texts/story``); it must stay under the root.
        """
        if not _PREFIX.match(prefix):
            raise UnsafePath(
                f"file prefix {prefix!r} is not allowed; use letters, digits, '_', '-', '.', "
                "and '/' between folder names (no leading '/' or '..')"
            )
        if not re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix):
            raise UnsafePath(f"file suffix {suffix!r} is not allowed; use e.g. '.txt'")
        base = self._base(prefix)
        with self._lock:
            counter = self._next.get((base, suffix))
            if counter is None:  # first file of this name here: continue after the highest one on disk
                self.root.mkdir(parents=True, exist_ok=True)
                base.parent.mkdir(parents=True, exist_ok=True)
                pattern = re.compile(re.escape(base.name) + r"_(\d+)" + re.escape(suffix) + "$")
                taken = [int(m.group(1)) for p in base.parent.iterdir() if (m := pattern.match(p.name))]
                counter = max(taken, default=0) + 1
            while True:
                path = base.with_name(f"{base.name}_{counter:05d}{suffix}")
                counter += 1
                try:
                    # "x" mode: atomic create-if-absent, so no two writers (or processes) share a file.
                    with open(path, "x"):
                        break
                except FileExistsError:
                    continue
                except FileNotFoundError:  # its folder was removed since: made again (no mkdir per file)
                    base.parent.mkdir(parents=True, exist_ok=True)
                    counter -= 1
            self._next[(base, suffix)] = counter
        return path
