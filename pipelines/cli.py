"""`ucv` — the command line for everything the DAG does, plus lookup, evaluation and benchmarks.

Each stage package owns its commands in `pipelines/<stage>/commands.py` (a `typer.Typer` named
`app`); this module only gathers them, so `ucv --help` lists every command in one place. Command
modules import heavy libraries inside the command bodies to keep `ucv --help` fast.

`main()` is the `ucv` entry point: a problem ends in one line on stderr, never a traceback —
exit code 2 for a bad argument, 1 for data the command cannot use (UCV_DEBUG=1 re-raises).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

app = typer.Typer(
    name="ucv",
    help="Unified customer view for insurers: ingest, resolve, golden records, publish.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click help: Typer's rich help formatting alone takes ~0.7 s to import
    rich_markup_mode=None,
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

USAGE, DATA = 2, 1
# The pipeline's own "this input cannot be used" errors: their messages name file, column and rule.
DATA_ERRORS = {"MappingError", "SourceRejected", "AccountingError", "OverridesInvalid",
               "WarehouseAuditFailed", "NothingLanded", "SparkUnavailable"}


def _say(message: str) -> None:
    # one line: a message with newlines (a library's multi-line error) is folded
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run `ucv` with `argv` (default: the process arguments); returns the exit code."""
    from pipelines.logs import configure_cli_logging

    configure_cli_logging()
    try:
        result = app(args=argv, prog_name="ucv", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.TyperException as exc:  # Typer's (vendored click's) usage and user errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
        elif ctx is not None:
            _say(f"{ctx.command_path}: {exc.format_message()} (see `{ctx.command_path} --help`)")
        else:
            _say(exc.format_message())
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _say("interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("UCV_DEBUG"):
            raise
        if isinstance(exc, OSError) or any(c.__name__ in DATA_ERRORS for c in type(exc).__mro__):
            _say(str(exc) or type(exc).__name__)
        else:
            _say(f"{type(exc).__name__}: {exc} (an unexpected error; UCV_DEBUG=1 shows the "
                 "traceback)")
        return DATA


if __name__ == "__main__":
    sys.exit(main())
