"""Lazy public names for the stage packages.

`ucv --help` and Airflow's DAG parsing import the stage packages; importing pandas, DuckDB or
Splink there would cost seconds. Each package's `__init__` lists its public names and the module
that defines each; the module is imported the first time a name is used (PEP 562).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, modules: dict[str, list[str]]) -> Callable[[str], Any]:
    """A module-level `__getattr__` that imports `modules[m]` names from module `m` on first use."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(where[name]), name)

    return __getattr__
