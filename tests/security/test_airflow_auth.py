"""`make airflow` needs a login (issue 15, finding 3): a real API server on 127.0.0.1 refuses
unauthenticated calls (401), hands out no token without a password, and refuses a forged Host."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time

import httpx
import pytest

from pipelines.orchestration.airflow_local import (
    ADMIN_USER,
    HOST,
    airflow_command,
    airflow_env,
    ensure_admin_password,
    migrate_db,
    passwords_file,
)
from pipelines.settings import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """A real `airflow api-server` with the `make airflow` settings, on a free local port."""
    home = tmp_path_factory.mktemp("airflow_home")
    port = _free_port()
    env = airflow_env(home, port=port)
    migrate_db(env, home / "migrate.log")
    password = ensure_admin_password(home)
    log = open(home / "api-server.log", "w")  # noqa: SIM115 - kept open for the server's life
    process = subprocess.Popen(airflow_command("api-server", "--host", HOST, "--port", str(port)),
                               env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "api-server did not start in 180 s"
            time.sleep(1)
        yield base, home, password
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


pytestmark = pytest.mark.slow


def test_the_api_refuses_unauthenticated_calls(api_server):
    base, _, _ = api_server
    assert httpx.get(f"{base}/api/v2/dags").status_code == 401
    assert httpx.get(f"{base}/api/v2/connections").status_code == 401
    assert httpx.post(f"{base}/api/v2/variables", json={"key": "k", "value": "v"}).status_code == 401
    forged = httpx.get(f"{base}/api/v2/dags", headers={"Authorization": "Bearer forged"})
    assert forged.status_code in (401, 403)


def test_no_token_without_the_password(api_server):
    base, _, _ = api_server
    assert httpx.get(f"{base}/auth/token").status_code in (401, 403)  # no `all_admins`
    wrong = httpx.post(f"{base}/auth/token", json={"username": ADMIN_USER, "password": "admin"})
    assert wrong.status_code == 401


def test_the_generated_password_logs_in_and_is_private(api_server):
    base, home, password = api_server
    assert password and len(password) >= 20
    path = passwords_file(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_password(home) is None  # created once, printed once
    token = httpx.post(f"{base}/auth/token", json={"username": ADMIN_USER, "password": password})
    assert token.status_code == 201
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert httpx.get(f"{base}/api/v2/dags", headers=headers).status_code == 200
    # Airflow found the user in our file: it neither replaced the password nor printed its own
    assert password in path.read_text() and password not in (home / "api-server.log").read_text()


def test_a_forged_host_header_is_refused(api_server):
    base, _, _ = api_server
    assert httpx.get(f"{base}/api/v2/monitor/health",
                     headers={"Host": "rebind.attacker.example"}).status_code == 400
    assert httpx.get(f"{base}/api/v2/monitor/health",
                     headers={"Host": "localhost:8080"}).status_code == 200


def test_a_dag_run_neither_needs_nor_prints_a_password(canary_run):
    logs = "".join(p.read_text() for p in (canary_run.airflow_home / "logs").glob("*.log"))
    assert canary_run.result["state"] == "success"
    assert "Password for user" not in logs and "all_admins" not in logs
