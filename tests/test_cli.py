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
