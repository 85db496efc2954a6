import importlib

from typer.testing import CliRunner

from pipelines.cli import COMMAND_MODULES, app


def test_every_stage_contributes_commands_and_names_are_unique():
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert len(names) == len(set(names)), names
    for module in COMMAND_MODULES:
        assert importlib.import_module(module).app.registered_commands, module


def test_help_lists_the_flow_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("generate", "ingest", "link", "identify", "golden", "publish", "run", "bench",
                    "resolve", "lookup"):
        assert command in result.output, command
