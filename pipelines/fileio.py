"""File modes for personal data: what the pipeline writes is readable by its owner and group only.

Files are created 0640 and folders 0750 by default (`UCV_FILE_MODE`, `UCV_DIR_MODE`, octal, to
change them). Importing `pipelines` sets the process umask from these modes, so every writer —
pyarrow, DuckDB `COPY`, DuckDB database files, `open()` — creates files that way without being told;
`replace()` also sets the mode explicitly when a finished file is renamed into place, and
`private_dir()` tightens folders that existed before (a data root made by hand, say).

Landed exports are opened with `open_regular()`: never through a symlink, only regular files, so a
file swapped for a link or a FIFO after it was listed is refused when it is opened, not read.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

DEFAULT_FILE_MODE = 0o640
DEFAULT_DIR_MODE = 0o750


def _mode(variable: str, default: int) -> int:
    value = os.environ.get(variable)
    if not value:
        return default
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        # An unreadable setting must not open files up: keep the private default and say so.
        print(f"ignoring {variable}={value!r}: not an octal mode such as "
              f"{default:04o}; using {default:04o}", file=sys.stderr)
        return default
    return mode


def file_mode() -> int:
    """Mode of files holding personal data (UCV_FILE_MODE, default 0640)."""
    return _mode("UCV_FILE_MODE", DEFAULT_FILE_MODE)


def dir_mode() -> int:
    """Mode of folders holding personal data (UCV_DIR_MODE, default 0750)."""
    return _mode("UCV_DIR_MODE", DEFAULT_DIR_MODE)


def private_umask() -> int:
    """The umask under which new files get at most `file_mode()` and folders `dir_mode()`."""
    return 0o777 & ~(file_mode() | dir_mode())


def apply_private_umask() -> int:
    """Set the process umask to `private_umask()`; returns the previous one."""
    return os.umask(private_umask())


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rename a finished file (or folder) over `dst` atomically, with the private mode set first."""
    src_path = Path(src)
    if not src_path.is_symlink():  # a link's mode means nothing, and chmod would follow it
        src_path.chmod(dir_mode() if src_path.is_dir() else file_mode())
    os.replace(src_path, dst)
    return Path(dst)


class NotRegularFile(OSError):
    """A file that must be read as a regular file is a symlink, or a FIFO, device or folder;
    `rule` is `no_symlink` or `regular_file`, `detail` says what the path is."""

    def __init__(self, path: str | os.PathLike, rule: str, detail: str):
        super().__init__(errno.EPERM, detail, str(path))
        self.path, self.rule, self.detail = Path(path), rule, detail

    def __str__(self) -> str:
        return self.detail


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_READ_FLAGS = (os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


def open_regular(path: str | os.PathLike, root: str | os.PathLike | None = None) -> BinaryIO:
    """Open a file for reading (binary) that must be a regular file reached without a symlink.

    O_NOFOLLOW refuses a link in the last component, O_NONBLOCK keeps a FIFO from blocking the
    open, and `fstat` of the opened descriptor (what is read, whatever the path names by then)
    must say regular file; else `NotRegularFile`. With `root`, the path is opened one component
    at a time below `root` (itself followed: a landing folder may be a link), none of them a link.
    """
    path = Path(path)
    if os.open not in os.supports_dir_fd:
        root = None  # one open of the whole path: its last component is still checked
    parts = path.relative_to(root).parts if root is not None else (str(path),)
    folder = os.open(root, os.O_RDONLY | _DIRECTORY) if root is not None else None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                fd = os.open(part, _READ_FLAGS if last else os.O_RDONLY | _NOFOLLOW | _DIRECTORY,
                             dir_fd=folder)
            except OSError as exc:
                # a link opened as a folder with O_NOFOLLOW gives ENOTDIR, as a file ELOOP
                if exc.errno in (errno.ELOOP, errno.EMLINK) or (
                        exc.errno == errno.ENOTDIR and Path(root or "", *parts[:i + 1]).is_symlink()):
                    raise NotRegularFile(path, "no_symlink",
                                         f"{path} is or passes through a symlink") from None
                raise
            if folder is not None:
                os.close(folder)
            folder = fd
    except BaseException:
        if folder is not None:
            os.close(folder)
        raise
    assert folder is not None
    fd = folder  # the file itself now
    mode = os.fstat(fd).st_mode
    problem = None
    if not _NOFOLLOW and path.is_symlink():  # no O_NOFOLLOW (Windows): the path is checked
        problem = NotRegularFile(path, "no_symlink", f"{path} is a symlink")
    elif not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
        problem = NotRegularFile(path, "regular_file", f"{path} is {kind}, not a regular file")
    if problem is not None:
        os.close(fd)
        raise problem
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def descriptor_path(file: BinaryIO, path: str | os.PathLike) -> str:
    """A path naming what `file` (opened from `path`) has open, for readers that take only a path
    (DuckDB's): the /proc or /dev/fd link re-opens that very file even if `path` was swapped
    since; `path` itself where the system has neither."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return f"{folder}/{file.fileno()}"
    return str(path)


def create_new(path: str | os.PathLike) -> BinaryIO:
    """Create `path` afresh for writing (binary): whatever is there first (a leftover, or a link
    planted under a temporary name) is removed, then the file is made with O_EXCL, never through
    a link, with the private file mode."""
    Path(path).unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0), file_mode())
    return os.fdopen(fd, "wb")


def private_dir(path: str | os.PathLike) -> Path:
    """Create `path` (and parents) if needed and give it the private folder mode."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(dir_mode())
    return folder


def world_accessible(path: str | os.PathLike) -> bool:
    """Whether anyone outside the owner and group may read, write or enter `path`."""
    return bool(os.stat(path).st_mode & 0o007)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file through a temporary name beside it, then `replace()` it into place."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    return replace(tmp, target)


# First characters a spreadsheet may read as a formula (OWASP "CSV Injection"), ASCII and
# full-width forms; the marketing export uses the same set.
FORMULA_TRIGGERS = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"


def _starts_formula(text: str) -> bool:
    stripped = text.lstrip("'")
    return bool(stripped) and stripped[0] in FORMULA_TRIGGERS


def formula_safe(value: str) -> str:
    """A CSV cell people open in spreadsheets: a leading formula trigger gets a single quote.

    Reversible (`formula_unsafe`): a value that only looks neutralised ('=..., ''+...) gets one
    more quote, so reading back always gives the value written.
    """
    return "'" + value if _starts_formula(value) else value


def formula_unsafe(cell: str) -> str:
    """The value `formula_safe` was given."""
    return cell[1:] if cell.startswith("'") and _starts_formula(cell) else cell
