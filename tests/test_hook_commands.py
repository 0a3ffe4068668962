"""Hook `register_commands`: a plugin adds `xmodal` commands (docs/plugins.md "register_commands");
a clash with an existing command is refused (tests/test_plugin_safety.py)."""

from __future__ import annotations

from xmodal.testing import XmodalTester


def register_commands(cli):
    @cli.command("greet")
    def greet(name: str = "world", shout: bool = False):
        """Greet someone from a plugin."""
        text = f"hello {name}"
        print(text.upper() if shout else text)


def test_hook_commands_a_plugin_command_runs_with_its_options(xmodal_tester: XmodalTester):
    xmodal_tester.register({"register_commands": register_commands}, name="greeter")
    assert xmodal_tester.cli("greet", "--name", "you", "--shout").assert_ok().out == "HELLO YOU\n"
    assert "greet" in xmodal_tester.cli("--help").out


def test_hook_commands_a_plugin_command_is_gone_once_its_tester_closes(tmp_path):
    with XmodalTester(tmp_path / "a") as tester:
        tester.register({"register_commands": register_commands}, name="greeter")
        assert tester.cli("greet").code == 0
    with XmodalTester(tmp_path / "b") as tester:
        result = tester.cli("greet")
        assert result.code == 2 and "No such command 'greet'" in result.output
