import subprocess
import sys
import time

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
    alone = process_tree_rss()
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; b = bytearray(100 * 2**20); b[::4096] = b'1' * len(b[::4096]); time.sleep(5)"])
    try:
        deadline = time.time() + 5
        while time.time() < deadline and process_tree_rss() - alone < 80 * 2**20:
            time.sleep(0.05)
        assert process_tree_rss() - alone > 80 * 2**20
    finally:
        child.kill()
        child.wait()
