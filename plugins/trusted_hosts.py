"""Airflow plugin: the API server answers only requests addressed to an allowed host name.

Airflow 3.3 has no setting for this; without it a web page on another origin can reach the local
API through DNS rebinding (a name that resolves to 127.0.0.1). Allowed names come from
`pipelines.orchestration.airflow_local.allowed_hosts()`; behind a reverse proxy, check hosts there.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from starlette.middleware.trustedhost import TrustedHostMiddleware

from pipelines.orchestration.airflow_local import allowed_hosts


class TrustedHostsPlugin(AirflowPlugin):
    name = "ucv_trusted_hosts"
    fastapi_root_middlewares = [{"name": "trusted_hosts", "middleware": TrustedHostMiddleware,
                                 "kwargs": {"allowed_hosts": allowed_hosts()}}]
