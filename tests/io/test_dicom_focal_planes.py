"""A DICOM whole slide scanned at several focal planes (a z-stack, TotalPixelMatrixFocalPlanes
> 1) is read at one stated plane, its middle one, and says so: a notification naming the file,
the plane count and the plane shown, and the layer's metadata. Before, wsidicom's default plane
was read and the other planes were dropped without a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from slide_builders import halvings, tissue_image, write_dicom_wsi

from napari_pathreview.io import load_image
from napari_pathreview.io.wsi import open_slide

PLUGIN = "napari-pathreview"


def _z_stack(count: int) -> np.ndarray:
    """``count`` focal planes of one section, each its own texture, so a plane is known by its
    pixels."""
    return np.stack([tissue_image(160, 128, seed=plane) for plane in range(count)])


def _whole(slide, level: int) -> np.ndarray:
    height, width = slide.level_shapes[level]
    return slide.read_region(level, 0, 0, height, width)


@pytest.mark.parametrize(("count", "middle"), [(3, 1), (4, 1)], ids=["3-planes", "4-planes"])
def test_a_dicom_z_stack_is_read_at_its_middle_focal_plane_at_every_level(
    tmp_path: Path, count: int, middle: int
) -> None:
    planes = _z_stack(count)
    files = write_dicom_wsi(tmp_path / "zstack", planes, n_levels=2, plane_um=1.5)
    with open_slide(files[0]) as slide:
        assert slide.focal_planes.planes_um == tuple(1.5 * k for k in range(count))
        assert slide.focal_planes.index == middle
        assert slide.focal_planes.shown_um == pytest.approx(1.5 * middle)
        for level, expected in enumerate(halvings(planes[middle], 2)):
            assert np.array_equal(_whole(slide, level), expected)


def test_a_dicom_z_stack_layer_states_its_planes_and_the_plane_shown(tmp_path: Path) -> None:
    files = write_dicom_wsi(tmp_path / "zstack", _z_stack(3), n_levels=2, plane_um=2.0)
    facts = load_image(files[0]).metadata
    assert facts["focal_planes_um"] == [0.0, 2.0, 4.0]
    assert facts["focal_plane_um"] == 2.0 and facts["focal_plane_index"] == 1
    assert "3 focal planes" in facts["focal_plane_note"]


def test_a_dicom_z_stack_opened_in_napari_notifies_the_file_planes_and_plane_shown(
    make_napari_viewer, tmp_path: Path
) -> None:
    from napari.utils.notifications import notification_manager

    planes = _z_stack(3)
    files = write_dicom_wsi(tmp_path / "zstack", planes, n_levels=2, plane_um=2.0)
    viewer = make_napari_viewer()
    start = len(notification_manager.records)
    [layer] = viewer.open(files[0], plugin=PLUGIN)
    notes = [str(n.message) for n in notification_manager.records[start:]]
    assert any(
        files[0].name in note and "3 focal planes" in note and "plane 2 of 3 (Z 2 µm" in note
        for note in notes
    ), notes
    assert layer.metadata["pathreview"]["focal_plane_um"] == 2.0
    assert np.array_equal(np.asarray(layer.data[0]), planes[1])


def test_a_single_plane_dicom_slide_states_no_focal_planes(tmp_path: Path) -> None:
    files = write_dicom_wsi(tmp_path / "flat", tissue_image(160, 128), n_levels=2)
    with open_slide(files[0]) as slide:
        assert slide.focal_planes is None
    assert "focal_plane_um" not in load_image(files[0]).metadata
