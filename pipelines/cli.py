"""`ucv` — the command line for everything the DAG does, plus lookup, evaluation and benchmarks.

Each stage package owns its commands in `pipelines/<stage>/commands.py` (a `typer.Typer` named
`app`); this module only gathers them, so `ucv --help` lists every command in one place. Command
modules import heavy libraries inside the command bodies to keep `ucv --help` fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="ucv",
    help="Unified customer view for insurers: ingest, resolve, golden records, publish.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# Order is the order of `ucv --help`: the flow first, then the tools around it.
COMMAND_MODULES = [
    "pipelines.generate.commands",
    "pipelines.ingest.commands",
    "pipelines.resolve.commands",
    "pipelines.identify.commands",
    "pipelines.golden.commands",
    "pipelines.orchestration.commands",
    "pipelines.serve.commands",
    "pipelines.bench.commands",
]

for _name in COMMAND_MODULES:
    app.registered_commands.extend(importlib.import_module(_name).app.registered_commands)


if __name__ == "__main__":
    app()
