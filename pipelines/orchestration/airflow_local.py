"""Airflow on this machine: a project-local AIRFLOW_HOME (.airflow/, SQLite) for `make run` and
`make airflow`.

`make airflow` (`python -m pipelines.orchestration.airflow_local`) starts the API server (UI),
scheduler and dag-processor with the LocalExecutor, bound to 127.0.0.1 only; Ctrl-C stops all three.
The API and UI need a login: user `admin`, with a password generated on first start, stored 0600
in the Airflow home and printed once. Requests whose Host header is not 127.0.0.1 or localhost are
refused (DNS rebinding), by the middleware in `plugins/trusted_hosts.py`.
Production runs on a Postgres metadata DB with the Celery or Kubernetes executor: docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipelines.settings import PROJECT_ROOT

DAG_ID = "unified_customer_view"
DAGS_FOLDER = PROJECT_ROOT / "dags"
LOCAL_AIRFLOW_HOME = PROJECT_ROOT / ".airflow"
PLUGINS_FOLDER = PROJECT_ROOT / "plugins"
HOST = "127.0.0.1"
ADMIN_USER = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
# Host headers the local API server answers; UCV_AIRFLOW_ALLOWED_HOSTS (comma-separated) adds names
ALLOWED_HOSTS = ("127.0.0.1", "localhost")


def airflow_env(airflow_home: Path = LOCAL_AIRFLOW_HOME, port: int = 8080,
                parallelism: int = 2) -> dict[str, str]:
    """Environment for Airflow commands: local home and SQLite DB, our DAG only, localhost only."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(parallelism),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://{HOST}:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{port}/execution/",
        # Anyone on the machine can reach 127.0.0.1, so even locally the API needs a password.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(airflow_home)),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    })
    return env


def passwords_file(airflow_home: Path = LOCAL_AIRFLOW_HOME) -> Path:
    return airflow_home / PASSWORDS_FILE


def ensure_admin_password(airflow_home: Path = LOCAL_AIRFLOW_HOME) -> str | None:
    """Create the admin password file (0600) if missing; returns the new password, else None.

    The file is Airflow's simple auth manager format ({"user": "password"}); Airflow finds the
    user there and neither generates nor prints a password of its own.
    """
    path = passwords_file(airflow_home)
    airflow_home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)  # a file copied in or loosened by hand goes back to owner-only
        return None
    password = secrets.token_urlsafe(18)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps({ADMIN_USER: password}) + "\n")
    return password


def allowed_hosts() -> list[str]:
    """Host header values the local API server accepts (plugins/trusted_hosts.py)."""
    extra = os.environ.get("UCV_AIRFLOW_ALLOWED_HOSTS", "")
    return [*ALLOWED_HOSTS, *(h.strip() for h in extra.split(",") if h.strip())]


def airflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def migrate_db(env: dict[str, str], log_file: Path | None = None) -> None:
    """`airflow db migrate`: create or upgrade the metadata DB (idempotent)."""
    _run_logged(airflow_command("db", "migrate"), env, log_file)


def dags_test(logical_date: str, env: dict[str, str], log_file: Path | None = None,
              conf: str | None = None) -> subprocess.Popen:
    """Start `airflow dags test` for one logical date; returns the running process."""
    args = ["dags", "test", DAG_ID, logical_date, *(["--conf", conf] if conf else [])]
    if log_file is None:
        return subprocess.Popen(airflow_command(*args), env=env, cwd=PROJECT_ROOT)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as out:  # the child keeps its own handle open
        return subprocess.Popen(airflow_command(*args), env=env, cwd=PROJECT_ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


def _run_logged(cmd: list[str], env: dict[str, str], log_file: Path | None) -> None:
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as out:
            result = subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, stdout=out,
                                    stderr=subprocess.STDOUT)
    else:
        result = subprocess.run(cmd, env=env, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        where = f"; see {log_file}" if log_file else ""
        raise RuntimeError(f"{' '.join(cmd[2:])} failed with exit code {result.returncode}{where}")


def serve(port: int = 8080, parallelism: int = 2) -> int:
    """Run API server, scheduler and dag-processor until Ctrl-C or until one of them exits."""
    env = airflow_env(port=port, parallelism=parallelism)
    # Ctrl-C and `kill` both stop all three components (SIGINT may arrive ignored when started
    # in the background)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    migrate_db(env)
    password = ensure_admin_password()
    from pipelines.orchestration.operations import ensure_pools

    ensure_pools(env)  # the heavy stages' pool (schemas/operations.yaml) must exist to schedule
    components = {
        "api-server": airflow_command("api-server", "--host", HOST, "--port", str(port)),
        "scheduler": airflow_command("scheduler", "--skip-serve-logs"),
        "dag-processor": airflow_command("dag-processor"),
    }
    processes = {name: subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT)
                 for name, cmd in components.items()}
    print(f"Airflow UI on http://{HOST}:{port} (AIRFLOW_HOME={env['AIRFLOW_HOME']}); the DAG "
          f"{DAG_ID} starts paused: unpause it in the UI. Ctrl-C stops everything.", flush=True)
    if password:
        print(f"Log in as {ADMIN_USER!r} with password {password} (shown once; kept in "
              f"{passwords_file()}, readable by you only).", flush=True)
    else:
        print(f"Log in as {ADMIN_USER!r}; the password is in {passwords_file()}.", flush=True)
    exit_code = 0
    try:
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
        exited = [n for n, p in processes.items() if p.poll() is not None]
        print(f"{', '.join(exited)} exited; stopping the others", file=sys.stderr)
        exit_code = 1
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return exit_code


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--parallelism", type=int, default=2,
                        help="task slots for the LocalExecutor (default 2: one per core here)")
    args = parser.parse_args()
    sys.exit(serve(port=args.port, parallelism=args.parallelism))


if __name__ == "__main__":
    main()
