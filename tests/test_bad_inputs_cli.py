"""The ``pathreview`` entry point: help text without markup, OS errors without tracebacks."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_pathreview.cli import _describe_os_error, build_parser, plain_text

CLI = [sys.executable, "-m", "napari_pathreview.cli"]


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_demo_help_shows_no_raw_markup() -> None:
    result = _run("demo", "--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and ":class:" not in result.stdout
    assert "sample_data/demo" in result.stdout  # the text is still there, only unmarked


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _all_parsers(sub)
    return found


def test_no_command_help_holds_markup() -> None:
    for parser in _all_parsers(build_parser()):
        text = parser.format_help()
        assert "``" not in text and ":func:`" not in text, parser.prog


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("``a.yaml``", "a.yaml"),
        (":class:`~x.Y`", "x.Y"),
        ("phases.*.epochs=1", "phases.*.epochs=1"),
    ],
)
def test_plain_text_strips_only_markup(text: str, plain: str) -> None:
    assert plain_text(text) == plain


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_os_error_on_a_named_file_is_reported_without_traceback() -> None:
    result = _run("stain", "fit", "--method", "reinhard", "--preset", "breakhis",
                  "--out", "/proc/pathreview-test.json")  # fmt: skip
    assert result.returncode == 2
    assert "/proc/pathreview-test.json" in result.stderr and "Traceback" not in result.stderr


def test_a_failed_rename_is_reported_by_its_target_not_the_temporary_file(tmp_path) -> None:
    """An atomic write renames a hidden temporary file onto the user's path."""
    temporary, target = tmp_path / ".report.csv.tmp123", tmp_path / "report.csv"
    temporary.write_text("a,b\n")
    target.mkdir()
    with pytest.raises(OSError) as caught:
        os.replace(temporary, target)
    message = _describe_os_error(caught.value)
    assert message == f"{target} is a folder; give a file name"


def test_a_failed_rename_names_the_target_with_the_system_s_reason(tmp_path) -> None:
    temporary, target = tmp_path / ".out.tmp123", tmp_path / "missing" / "out.csv"
    temporary.write_text("a,b\n")
    with pytest.raises(OSError) as caught:
        os.replace(temporary, target)
    assert _describe_os_error(caught.value) == f"{target}: No such file or directory"


def test_a_reader_that_stops_early_ends_the_command_without_traceback() -> None:
    """``pathreview models list | head``: the pipe closes before the command writes to it."""
    console_script = str(Path(sys.executable).with_name("pathreview"))
    process = subprocess.Popen(
        [console_script, "models", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # the only reader is gone: every write to stdout fails (EPIPE)
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141  # 128 + SIGPIPE, as a shell reports `head`'s writer
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


REFUSED_WITH_AN_OUTPUT = {
    "review-export-missing-db": "review export --db {tmp}/missing.db --out {tmp}/new/manifest.csv",
    "review-queue-missing-db": "review queue --db {tmp}/missing.db --out {tmp}/new/queue.csv",
    "review-queue-no-model": "review queue {tmp} --out {tmp}/new/queue.csv",
    "stain-fit-preset-of-another-method": (
        "stain fit --preset breakhis --method macenko --out {tmp}/new/target.json"
    ),
}


@pytest.mark.parametrize("command", REFUSED_WITH_AN_OUTPUT.values(), ids=REFUSED_WITH_AN_OUTPUT)
def test_a_refused_command_leaves_no_folder_for_its_output(command, tmp_path) -> None:
    """The output is checked first, but its folder is made only when the file is written."""
    result = _run(*command.format(tmp=tmp_path).split())
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "new").exists()


def test_stain_fit_makes_the_folder_of_its_out_when_it_writes(tmp_path) -> None:
    out = tmp_path / "targets" / "breakhis.json"
    result = _run("stain", "fit", "--preset", "breakhis", "--method", "reinhard", "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
