import subprocess
import sys
import time

import psutil

from pipelines.bench.resources import measure, process_tree_rss


def test_measure_sees_memory_allocated_inside_the_block():
    with measure(interval=0.01) as before:
        pass
    with measure(interval=0.01) as during:
        block = bytearray(200 * 2**20)  # 200 MiB, touched so it is resident
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.1)  # give the sampler a chance to see it before it is freed
        del block
    assert during.peak_rss_bytes - before.peak_rss_bytes > 150 * 2**20
    assert during.seconds > 0 and during.samples >= 1


def test_process_tree_rss_counts_children():
    # The tree is measured from a small parent of its own, not from this test process: a pytest
    # worker's memory is shared with its forked siblings and moves with whatever other tests left
    # behind, so "this process alone" and "this process with a child" (RSS against PSS) were not
    # comparable and the difference could come out negative.
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "sys.stdin.readline()\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "\"import time; b = bytearray(100 * 2**20); b[::4096] = b'1' * len(b[::4096]); time.sleep(30)\"])\n"
        "child.wait()\n")], stdin=subprocess.PIPE)
    try:
        time.sleep(0.3)
        alone = process_tree_rss(psutil.Process(parent.pid))
        assert 0 < alone < 80 * 2**20
        assert parent.stdin is not None
        parent.stdin.write(b"go\n")
        parent.stdin.flush()
        deadline = time.time() + 10
        while time.time() < deadline and process_tree_rss(psutil.Process(parent.pid)) - alone < 80 * 2**20:
            time.sleep(0.05)
        assert process_tree_rss(psutil.Process(parent.pid)) - alone > 80 * 2**20
    finally:
        for proc in psutil.Process(parent.pid).children(recursive=True):
            proc.kill()
        parent.kill()
        parent.wait()


def test_a_slow_reading_spaces_the_next_ones_out(monkeypatch):
    # a reading of a big child's PSS stalls that child: the sampler must not read back to back
    import pipelines.bench.resources as resources

    def slow_reading(process=None):
        time.sleep(0.02)
        return 1

    monkeypatch.setattr(resources, "process_tree_rss", slow_reading)
    with measure(interval=0.001) as m:
        time.sleep(1.0)
    # 20 x 0.02 s between readings: about 3 in a second (back to back it was ~45)
    assert 1 <= m.samples <= 6
