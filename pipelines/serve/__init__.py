"""Serve: the HTTP service over the published warehouse — real-time resolve, look-ups, the review
queue and the steward workbench (`ucv serve`, `make serve`).

The public surface; everything else in this package is internal.
"""

from typing import TYPE_CHECKING

from pipelines._lazy import lazy_attributes

if TYPE_CHECKING:
    from pipelines.serve.app import create_app
    from pipelines.serve.config import ServeConfig, load_or_create_token
    from pipelines.serve.warehouse import WarehouseHolder, load_version

__all__ = ["ServeConfig", "WarehouseHolder", "create_app", "load_or_create_token", "load_version"]

__getattr__ = lazy_attributes(__name__, {
    "pipelines.serve.app": ["create_app"],
    "pipelines.serve.config": ["ServeConfig", "load_or_create_token"],
    "pipelines.serve.warehouse": ["WarehouseHolder", "load_version"],
})
