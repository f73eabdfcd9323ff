"""The installed plugin: valid manifest, found by napari, IO commands resolvable, wheel complete."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from napari_pathreview._sample_data import SAMPLES

PLUGIN = "napari-pathreview"
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_installed_manifest_validates_without_importing_widgets() -> None:
    npe2_cli = Path(sys.executable).with_name("npe2")
    result = subprocess.run(
        [str(npe2_cli), "validate", PLUGIN], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout.lower()


def test_manifest_ships_inside_the_package_and_matches_the_repo_copy() -> None:
    installed = resources.files("napari_pathreview") / "napari.yaml"
    assert installed.is_file()
    assert installed.read_text() == (REPO_ROOT / "napari.yaml").read_text()


def test_napari_plugin_manager_finds_readers_writers_and_samples(tmp_path: Path) -> None:
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    assert PLUGIN in {manifest.name for manifest in manager.iter_manifests()}
    for name in ("mdb001.pgm", "slide.svs", "scan.dcm", "rois.geojson", "Info.txt", "tile.png"):
        readers = {
            reader.plugin_name for reader in manager.iter_compatible_readers([str(tmp_path / name)])
        }
        assert PLUGIN in readers, name
    for layer_type in ("shapes", "labels"):
        writers = {w.plugin_name for w in manager.iter_compatible_writers([layer_type])}
        assert PLUGIN in writers, layer_type
    samples = dict(manager.iter_sample_data())
    assert {contribution.key for contribution in samples[PLUGIN]} == set(SAMPLES)


def test_io_commands_resolve_to_callables() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    io_commands = [
        c
        for c in manifest.contributions.commands
        if c.python_name.split(":")[0]
        in (
            "napari_pathreview._reader",
            "napari_pathreview._writer",
            "napari_pathreview._sample_data",
        )
    ]
    assert len(io_commands) == 8
    for command in io_commands:
        module, name = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), name)), command.id


def test_reader_module_import_stays_light() -> None:
    code = (
        "import sys, napari_pathreview._reader, napari_pathreview.io; "
        "heavy = [m for m in ('torch', 'qtpy', 'napari', 'PyQt6') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_wheel_contains_manifest_and_sample_data(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--quiet",
        "-w",
        str(tmp_path),
        str(REPO_ROOT),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "No matching distribution found for hatchling" in result.stderr:
        pytest.skip("the hatchling build backend cannot be fetched (offline)")
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("napari_pathreview-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_pathreview/napari.yaml" in names
    for relative in list(SAMPLES.values()) + [
        "ATTRIBUTION.md",
        "mias/Info.txt",
        "demo/histology/labels.csv",
        "demo/mammogram/labels.csv",
    ]:
        assert f"napari_pathreview/sample_data/{relative}" in names, relative
