"""Wall time and peak memory of a block of work, measured as the memory of the whole process tree.

A sampler thread reads the RSS of this process and all its children every `interval` seconds, so
memory used by DuckDB's threads, Airflow task subprocesses or worker processes is counted too.

Measuring must not cost what it measures. A child's proportional set size comes from the kernel
walking the child's page tables (`smaps_rollup`), about 0.1 s for a 2.5 GB DuckDB process, and the
walk holds the child's memory-map lock, so its threads wait: sampled every 50 ms, golden took 32 s
instead of 16 s at 1M records. The sampler therefore waits at least `SAMPLER_DUTY` times as long
as its last reading took (20 readings of 0.1 s: one every 2 s), keeping its cost near 5 %.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

SAMPLER_DUTY = 20  # wait >= 20 x the last reading: the sampler's share of the time stays ~5 %

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
            began = time.perf_counter()
            rss = process_tree_rss(me)
            result.peak_rss_bytes = max(result.peak_rss_bytes, rss)
            result.samples += 1
            if stop.wait(max(interval, SAMPLER_DUTY * (time.perf_counter() - began))):
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
