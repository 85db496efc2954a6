"""Test support for the service: a small published warehouse and a live uvicorn on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from orchestration_support import (  # tests/orchestration_support.py
    EXPORT_DATE,
    generate_sample,
    land,
)

from pipelines import settings
from pipelines.orchestration.run import run_pipeline
from pipelines.serve.app import create_app
from pipelines.serve.config import ServeConfig
from pipelines.serve.warehouse import WarehouseHolder

TOKEN = "test-token-" + "x" * 32
SERVICE_CUSTOMERS = 600  # enough for a handful of review groups


@dataclass
class Published:
    home: Path
    landing: Path
    overrides: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse" / "ucv.duckdb"


def publish_night(published: Published, export_date) -> None:
    """One nightly run in the test's data root, with the test's override file."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UCV_HOME", str(published.home))
        # the nightly stage reads the project's stewardship file; the test has its own
        mp.setattr("pipelines.identify.assign.DEFAULT_OVERRIDES_FILE", published.overrides)
        if not (published.home / "landing" / export_date.isoformat()).exists():
            land(published.home, published.landing, export_date)
        run_pipeline(export_date)
        assert settings.data_root() == published.home.resolve()


@pytest.fixture
def next_night():
    """publish_night, for tests that run a second night."""
    return publish_night


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Published:
    landing = generate_sample(tmp_path_factory.mktemp("sample"), customers=SERVICE_CUSTOMERS)
    home = tmp_path_factory.mktemp("home")
    result = Published(home, landing, home / "stewardship" / "overrides.csv")
    publish_night(result, EXPORT_DATE)
    return result


class LiveServer:
    """uvicorn serving the app on a free loopback port, in a thread of the test process."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.holder = WarehouseHolder(config.warehouse, config.open_lead_days, config.poll_seconds)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(config, self.holder), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 300) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).json()["status"] == "ok":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"service did not come up on {self.url}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, token: str | None = "default") -> httpx.Client:
        token = self.config.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_for_version(self, label_not: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = httpx.get(self.url + "/health", timeout=5).json()
            if health["warehouse_version"] != label_not:
                return health
            time.sleep(0.3)
        raise TimeoutError(f"the service did not pick up the new warehouse: {health}")


@pytest.fixture(scope="module")
def server(published):
    config = ServeConfig(warehouse=published.warehouse, overrides_file=published.overrides,
                         token=TOKEN, steward_password="steward-pass", poll_seconds=0.2)
    live = LiveServer(config).start()
    yield live
    live.stop()
