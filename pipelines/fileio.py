"""File modes for personal data: what the pipeline writes is readable by its owner and group only.

Files are created 0640 and folders 0750 by default (`UCV_FILE_MODE`, `UCV_DIR_MODE`, octal, to
change them). Importing `pipelines` sets the process umask from these modes, so every writer —
pyarrow, DuckDB `COPY`, DuckDB database files, `open()` — creates files that way without being told;
`replace()` also sets the mode explicitly when a finished file is renamed into place, and
`private_dir()` tightens folders that existed before (a data root made by hand, say).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
    src_path.chmod(dir_mode() if src_path.is_dir() else file_mode())
    os.replace(src_path, dst)
    return Path(dst)


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
