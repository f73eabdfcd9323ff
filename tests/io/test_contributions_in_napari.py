"""Each napari.yaml contribution as napari calls it: File ▸ Open, Save Selected Layers, samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pathreview._reader import napari_get_reader
from napari_pathreview.errors import LayerExportError
from napari_pathreview.io.images import IMAGE_SUFFIXES
from napari_pathreview.io.layers import can_read

pytestmark = pytest.mark.viewer


def test_saving_a_3d_labels_layer_as_geojson_says_why_it_cannot(
    make_napari_viewer, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    stack = np.zeros((3, 32, 32), dtype=np.uint8)
    stack[1, 5:15, 5:15] = 2
    viewer.add_labels(stack, name="nuclei stack")
    with pytest.raises(LayerExportError, match=r"nuclei stack.*\(3, 32, 32\).*one 2-D plane"):
        viewer.layers.save(str(tmp_path / "nuclei.geojson"), selected=True)
    assert not (tmp_path / "nuclei.geojson").exists()


def test_a_labels_stack_of_one_plane_saves_as_that_plane(
    make_napari_viewer, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    stack = np.zeros((1, 32, 32), dtype=np.uint8)
    stack[0, 5:15, 5:15] = 2
    viewer.add_labels(stack, name="one plane")
    written = viewer.layers.save(str(tmp_path / "plane.geojson"), selected=True)
    (back,) = viewer.open(written[0], plugin=None)
    assert back.features["label"].tolist() == [2]


def _offered(manager, path: Path) -> bool:
    """Whether File ▸ Open offers this plugin for ``path`` (npe2's pattern match, as napari)."""
    return "napari-pathreview" in {r.plugin_name for r in manager.iter_compatible_readers([path])}


@pytest.fixture
def manager():
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    return manager


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES | {".geojson"}))
def test_every_suffix_the_reader_opens_is_offered_in_any_case(
    manager, tmp_path: Path, suffix: str
) -> None:
    for name in (f"scan 1{suffix}", f"SCAN 1{suffix.upper()}", f"Scan.v2{suffix.title()}"):
        assert can_read(tmp_path / name), name
        assert _offered(manager, tmp_path / name), name


@pytest.mark.parametrize("name", ["Info.txt", "info.txt", "INFO.TXT", "INFO.txt"])
def test_a_mias_info_table_is_offered_whatever_its_case(manager, tmp_path: Path, name) -> None:
    assert can_read(tmp_path / name)
    assert _offered(manager, tmp_path / name)


def test_every_manifest_pattern_names_files_the_reader_opens(manager, tmp_path: Path) -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-pathreview")
    (reader,) = manifest.contributions.readers
    geojson = '{"type": "FeatureCollection", "features": []}'
    for pattern in reader.filename_patterns:
        path = tmp_path / pattern.replace("*", "roi").replace("?", "x")
        if path.suffix.lower() == ".txt":
            path = tmp_path / "Info.txt"
        path.write_text(geojson if path.suffix.lower() == ".json" else "")
        assert napari_get_reader(str(path)) is not None, pattern


def _entries(menu, prefix: str = "") -> list[str]:
    entries = []
    for action in menu.actions():
        if action.menu():
            entries += _entries(action.menu(), f"{prefix}{action.text()} ▸ ")
        elif action.text():
            entries.append(prefix + action.text().replace("&&", "&"))
    return entries


def test_the_plugins_menu_lists_each_dock_by_the_name_the_readme_gives(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    ours = [e for e in _entries(viewer.window.plugins_menu) if e.startswith("PathReview ▸ ")]
    names = [e.removeprefix("PathReview ▸ ") for e in ours]
    assert names == ["Workspace (Analyze + Review)", "Analyze", "Review"]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "*Plugins ▸ PathReview*" in readme
    assert all(f"*{name}*" in readme for name in names)
