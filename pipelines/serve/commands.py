"""`ucv serve`: the HTTP service (API + steward workbench) on loopback by default."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer()


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback by default)"),
    port: int = typer.Option(8765, min=1, max=65535, help="port"),
    warehouse: Path = typer.Option(None, help="published warehouse file (default: data/warehouse/ucv.duckdb)"),
    overrides: Path = typer.Option(None, help="steward override file (default stewardship/overrides.csv)"),
    allow_remote: bool = typer.Option(False, help="allow a non-loopback --host (put TLS in front of it)"),
) -> None:
    """Serve real-time resolve, look-ups, the review queue and the steward workbench (OpenAPI)."""
    import os

    import uvicorn
    from rich.console import Console

    from pipelines import settings
    from pipelines.serve.app import create_app
    from pipelines.serve.config import (
        STEWARD_PASSWORD_ENV,
        ServeConfig,
        is_loopback,
        load_or_create_token,
        token_file,
    )

    console = Console(stderr=True)
    if not is_loopback(host) and not allow_remote:
        raise typer.BadParameter(f"{host} is not a loopback address; add --allow-remote to listen on it")
    token, created = load_or_create_token()
    if created:
        console.print(f"[bold]API token[/] (shown once; stored 0600 in {token_file()}):\n{token}")
    else:
        console.print(f"API token: from {'UCV_SERVE_TOKEN' if os.environ.get('UCV_SERVE_TOKEN') else token_file()}")
    config = ServeConfig(
        warehouse=warehouse or settings.warehouse_file(),
        overrides_file=overrides or settings.OVERRIDES_DIR / "overrides.csv",
        token=token, steward_password=os.environ.get(STEWARD_PASSWORD_ENV) or None)
    console.print(f"serving {config.warehouse} on http://{host}:{port}  "
                  f"(workbench: /workbench, OpenAPI: /openapi.json)")
    uvicorn.run(create_app(config), host=host, port=port, log_level="info",
                limit_concurrency=64, timeout_keep_alive=5, server_header=False)
