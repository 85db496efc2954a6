"""Service settings: where it listens, what it serves, the access token and request limits.

Loopback by default. The token comes from `UCV_SERVE_TOKEN`, else from `<data root>/serve/token`
(created on first start with 32 random bytes, mode 0600, and printed once by `ucv serve`).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import settings

LOOPBACK = "127.0.0.1"
TOKEN_ENV = "UCV_SERVE_TOKEN"
STEWARD_PASSWORD_ENV = "UCV_STEWARD_PASSWORD"


@dataclass(frozen=True)
class ServeConfig:
    """What one service process serves and how it protects it."""

    warehouse: Path = field(default_factory=settings.warehouse_file)
    overrides_file: Path = field(default_factory=lambda: settings.OVERRIDES_DIR / "overrides.csv")
    token: str = ""
    steward_password: str | None = None
    max_body_bytes: int = 64 * 1024
    max_top_k: int = 50
    poll_seconds: float = 1.0  # how often the published warehouse file is checked for a swap
    open_lead_days: int = 365  # a sales lead this recent, for a product not yet held, is open

    @property
    def not_sure_file(self) -> Path:
        """'Not sure' answers: kept beside the overrides, never applied by the pipeline."""
        return self.overrides_file.with_name("not_sure.csv")


def token_file() -> Path:
    return settings.data_root() / "serve" / "token"


def load_or_create_token() -> tuple[str, bool]:
    """(token, created): from the environment, else the token file, else a new one written 0600."""
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env, False
    path = token_file()
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: two services starting at once cannot both write; 0600 before any byte is written
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
