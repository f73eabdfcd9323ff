"""The ``pathreview`` command exposes every documented sub-command."""

import pytest

from napari_pathreview.cli import build_parser, main

DOCUMENTED_COMMANDS = {
    "demo",
    "predict",
    "explain",
    "evaluate-cam",
    "train",
    "models",
    "stain",
    "qc",
    "review",
}


def test_every_documented_command_is_present():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(subparsers.choices) >= DOCUMENTED_COMMANDS


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 1
    assert "usage: pathreview" in capsys.readouterr().out


def test_version_flag_prints_the_package_version(capsys):
    from napari_pathreview import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def _subcommands(parser) -> dict:
    """name → sub-parser of one argparse level (empty when it has none)."""
    import argparse

    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def _readme_summary() -> list[list[str]]:
    """The lines of README's "Command line" block, split into words."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("## Command line", 1)[1].split("```", 2)[1]
    return [line.split() for line in block.splitlines() if line.startswith("pathreview ")]


def test_the_readme_command_summary_lists_every_command_and_action_the_parser_has():
    listed = {words[1]: (words[2:] or [""])[0] for words in _readme_summary()}
    for command, sub in _subcommands(build_parser()).items():
        assert command in listed, f"README's Command line omits `pathreview {command}`"
        for action in _subcommands(sub):
            assert action in listed[command].split("|"), f"README omits {command} {action}"


def test_every_option_the_readme_command_summary_names_exists():
    import re

    commands = _subcommands(build_parser())
    for words in _readme_summary():
        command = commands[words[1]]
        parsers = [command, *_subcommands(command).values()]
        known = {flag for p in parsers for a in p._actions for flag in a.option_strings}
        for flag in re.findall(r"--[a-z][a-z0-9-]*", " ".join(words)):
            assert flag in known, f"README names `pathreview {words[1]} {flag}`, which is not there"
