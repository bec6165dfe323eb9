"""The CLI surface operators' scripts rely on (shared/CONTRACTS.md)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from actors.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _commands(cmd, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


COMMANDS = _commands(main)


def test_every_contract_command_exists() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"up", "down", "status", "restart", "check", "logs", "halt", "resume", "trades", "trace", "report",
            "audit export"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_takes_run_dir(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "--run-dir" in result.output


@pytest.mark.parametrize("command", [("status",), ("trades",), ("trace",), ("report",), ("logs",)], ids=" ".join)
def test_listing_commands_take_json(command: tuple[str, ...]) -> None:
    assert "--json" in CliRunner().invoke(main, [*command, "--help"]).output


def test_bad_usage_exits_2_and_runtime_failure_exits_1(tmp_path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["up"]).exit_code == 2  # missing CONFIG
    assert runner.invoke(main, ["logs", "--grep", "novalue", "--run-dir", str(tmp_path)]).exit_code == 2
    assert runner.invoke(main, ["trades", "--run-dir", str(tmp_path)]).exit_code == 1  # no journal there
    assert runner.invoke(main, ["status", "--json", "--run-dir", str(tmp_path)]).exit_code == 1
