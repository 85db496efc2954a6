"""Load test of the HTTP service on loopback: cold start, then p50/p95/p99 per endpoint at each
concurrency, against a published warehouse.

The service runs as its own process (`ucv serve`, as an operator starts it); the client threads
each keep one HTTP connection open, and send a bounded number of requests per endpoint. Queries are
stored records drawn with a seed: resolve sends them as new sales leads (the CRM's export shape,
through real-time standardization) and as canonical records, each with a new id and one field
blanked; look-ups use their phone, e-mail, policy number, national ID and name.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from pipelines.identify.bench import _BLANKED, _sample_queries, as_sales_lead

ENDPOINTS = ("resolve_sales", "resolve_canonical", "lookup_phone", "lookup_email", "lookup_policy",
             "lookup_national_id", "lookup_name")


def bench_serve(warehouse: Path, requests_per_endpoint: int = 400, concurrency: tuple[int, ...] = (1, 8),
                seed: int = 0, startup_timeout: float = 1800) -> dict:
    """Start `ucv serve` on `warehouse`, time its cold start, then load-test every endpoint."""
    token = secrets.token_urlsafe(24)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "UCV_SERVE_TOKEN": token}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port), "--warehouse", str(warehouse)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        cold_start = _wait_ready(url, process, started, startup_timeout)
        requests = _requests(Path(warehouse), requests_per_endpoint, seed)
        results: dict = {}
        for endpoint in ENDPOINTS:
            results[endpoint] = {}
            for workers in concurrency:
                results[endpoint][f"c{workers}"] = _load(url, token, requests[endpoint], workers)
        rss = _rss_mib(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return {"warehouse": str(warehouse), "cold_start_seconds": round(cold_start, 1),
            "service_rss_mib": rss, "requests_per_endpoint": requests_per_endpoint,
            "concurrency": list(concurrency), "endpoints": results}


def _wait_ready(url: str, process: subprocess.Popen, started: float, timeout: float) -> float:
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"ucv serve exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        try:
            if httpx.get(url + "/health", timeout=2).json().get("status") == "ok":
                return time.perf_counter() - started
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"ucv serve not ready after {timeout} s")


def _requests(warehouse: Path, n: int, seed: int) -> dict[str, list[tuple[str, str, dict]]]:
    """(method, path, json body or query params) per endpoint, n each (cycled when keys are scarce)."""
    rows = _sample_queries(warehouse, 3 * n, seed)
    out: dict[str, list[tuple[str, str, dict]]] = {e: [] for e in ENDPOINTS}
    for i, row in enumerate(rows):
        canonical = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()
                     if k not in ("customer_id", "quality_flags") and v is not None
                     and not (isinstance(v, float) and np.isnan(v))}
        canonical.pop(_BLANKED[i % len(_BLANKED)], None)
        canonical["source_record_id"] = f"bench:{i}"
        lead = {k: v for k, v in as_sales_lead(row, i).items() if v is not None}
        out["resolve_sales"].append(("POST", "/resolve", {"source": "sales", "record": lead}))
        out["resolve_canonical"].append(("POST", "/resolve", {"source": "canonical", "record": canonical}))
        for endpoint, key, value in (("lookup_phone", "phone", row.get("phone_mobile")),
                                     ("lookup_email", "email", row.get("email")),
                                     ("lookup_policy", "policy", row.get("policy_number")),
                                     ("lookup_national_id", "national_id", row.get("national_id")),
                                     ("lookup_name", "name", row.get("full_name") or row.get("org_name"))):
            if value:
                path = "/lookup/national-id" if key == "national_id" else f"/lookup/{key}"
                out[endpoint].append(("GET", path, {key: value}))
    for endpoint, items in out.items():
        if not items:
            raise ValueError(f"no sample values for {endpoint} in {warehouse}")
        out[endpoint] = [items[i % len(items)] for i in range(n)]
    return out


def _load(url: str, token: str, requests: list[tuple[str, str, dict]], workers: int) -> dict:
    """Send the requests from `workers` threads (one keep-alive connection each); latency stats.

    The client is `http.client` with each request encoded before the clock starts: on two cores
    the load generator shares the machine with the service, and httpx cost ~2.5 ms of CPU per
    request here (as much as a look-up itself), against ~0.3 ms. The client's CPU per request is
    reported beside the figures."""
    import http.client
    import json
    import resource
    from urllib.parse import urlencode, urlsplit

    target = urlsplit(url)
    host, port = target.hostname or "127.0.0.1", target.port
    headers = {"Authorization": f"Bearer {token}"}
    encoded = [(method, path, json.dumps(payload).encode()) if method == "POST"
               else (method, f"{path}?{urlencode(payload)}" if payload else path, None)
               for method, path, payload in requests]
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    position = iter(range(len(encoded)))

    def send(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None) -> int:
        connection.request(method, path, body=body, headers=(
            {**headers, "Content-Type": "application/json"} if body is not None else headers))
        response = connection.getresponse()
        response.read()
        return response.status

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        try:
            send(connection, "GET", "/health", None)  # open the connection before timing
            while True:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                status = send(connection, *encoded[i])
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(elapsed)
                    if status != 200:
                        errors.append(status)
        finally:
            connection.close()

    # warm-up outside the timing: the first request of each kind pays lazy imports and caches
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        for item in encoded[:5]:
            send(connection, *item)
    finally:
        connection.close()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime)
    ms = np.array(latencies)
    return {"requests": len(latencies), "errors": len(errors),
            "error_statuses": sorted(set(errors)),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1),
            "throughput_rps": round(len(latencies) / wall, 1),
            "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(latencies)), 2)}


def _rss_mib(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except Exception:  # the process is gone: no figure rather than a wrong one
        return None
