"""Wall time and peak memory of a block of work, measured as the memory of the whole process tree.

A sampler thread reads the RSS of this process and all its children every `interval` seconds, so
memory used by DuckDB's threads, Airflow task subprocesses or worker processes is counted too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil


def process_tree_rss(process: psutil.Process | None = None) -> int:
    """Resident memory in bytes of a process and all its descendants (vanished ones count 0).

    With children, each process counts its proportional set size (Linux `smaps_rollup`): a
    forked child shares its parent's pages until it writes them, and summing RSS would count
    those twice. Alone, a process counts its RSS (no sharing to correct, and cheaper to read)."""
    root = process or psutil.Process()
    try:
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in [root, *children]:
        try:
            total += (_pss(proc.pid) if children else None) or proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _pss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux, or gone: the caller falls back to RSS
        return None
    return None


@dataclass
class Measurement:
    """What one measured block cost."""

    seconds: float = 0.0
    peak_rss_bytes: int = 0
    samples: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / 2**20

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "peak_rss_mib": round(self.peak_rss_mib, 1),
                "samples": self.samples, **self.extra}


@contextmanager
def measure(interval: float = 0.05) -> Iterator[Measurement]:
    """Measure the wall time and peak process-tree RSS of the `with` block."""
    result = Measurement()
    stop = threading.Event()
    me = psutil.Process()

    def sample() -> None:
        while True:
            rss = process_tree_rss(me)
            result.peak_rss_bytes = max(result.peak_rss_bytes, rss)
            result.samples += 1
            if stop.wait(interval):
                return

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    started = time.perf_counter()
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        result.seconds = time.perf_counter() - started
        result.peak_rss_bytes = max(result.peak_rss_bytes, process_tree_rss(me))
