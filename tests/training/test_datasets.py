"""Data sources become labelled samples with patients; images decode once into a cache."""

import csv

import numpy as np
import pytest

from napari_pathreview.breast_region import breast_box
from napari_pathreview.training.datasets import (
    DatasetError,
    class_names,
    data_fingerprint,
    from_breakhis,
    from_csv,
    from_folder,
    from_mias,
    prepare_image,
    stratified_subset,
)


def test_breakhis_names_give_binary_and_subtype_labels_and_patients(shared_data):
    binary = from_breakhis(shared_data / "breakhis", "binary")
    assert len(binary) == 64 and {s.label for s in binary} == {"benign", "malignant"}
    subtype = from_breakhis(shared_data / "breakhis", "subtype", magnification=40)
    assert len(subtype) == 30 and all(s.extra["magnification"] == 40 for s in subtype)
    assert class_names(subtype, "subtype")[0] == "A"
    dc = next(s for s in binary if "DC-14-2523" in s.path)
    assert dc.patient_id == "14-2523" and dc.label == "malignant"


def test_mias_labels_are_three_classes_and_patient_is_the_woman(shared_data):
    samples = from_mias(shared_data / "mias_full")
    assert len(samples) == 258
    by_name = {s.path.rsplit("/", 1)[-1]: s for s in samples}
    assert by_name["mdb001.png"].patient_id == by_name["mdb002.png"].patient_id == "1"
    assert by_name["mdb003.png"].patient_id == "2"
    assert by_name["mdb001.png"].label == "benign" and by_name["mdb001.png"].rois
    counts = {c: sum(s.label == c for s in samples) for c in ("normal", "benign", "malignant")}
    assert counts == {"normal": 168, "benign": 48, "malignant": 42}


def test_folder_tree_and_csv_manifest(png_tree, tmp_path):
    samples = from_folder(png_tree)
    assert len(samples) == 12 and {s.label for s in samples} == {"dark", "light"}
    manifest = tmp_path / "tree" / "m.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient_id", "weight"])
        writer.writerow(["dark/dark_0.png", "dark", "p1", "2.5"])
        writer.writerow(["light/light_0.png", "light", "", ""])
    rows = from_csv(manifest)
    assert rows[0].patient_id == "p1" and rows[0].weight == 2.5
    assert rows[1].patient_id == "light/light_0" and rows[1].weight == 1.0


def test_bad_sources_raise_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        from_folder(tmp_path / "absent")
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label\na.png,x\n")
    with pytest.raises(DatasetError, match="lacks column"):
        from_csv(manifest)
    with pytest.raises(DatasetError, match="no MIAS"):
        from_mias(tmp_path)


def test_fingerprint_depends_on_names_and_labels_only(png_tree):
    samples = from_folder(png_tree)
    assert data_fingerprint(samples) == data_fingerprint(list(reversed(samples)))
    relabelled = [samples[0].__class__(samples[0].path, "light", "x")] + samples[1:]
    assert data_fingerprint(relabelled) != data_fingerprint(samples)


def test_subset_keeps_both_classes(png_tree):
    subset = stratified_subset(from_folder(png_tree), 4, seed=0)
    assert len(subset) == 4 and {s.label for s in subset} == {"dark", "light"}


def test_breast_crop_drops_the_background_and_maps_rois(shared_data):
    sample = next(s for s in from_mias(shared_data / "mias_full") if s.path.endswith("mdb001.png"))
    prepared = prepare_image(sample, 128, crop="breast")
    assert prepared.pixels.shape == (128, 128, 3) and prepared.pixels.dtype == np.uint8
    row, col, radius = prepared.rois[0]
    assert 0 <= row < 128 and 0 <= col < 128 and radius > 0
    gray = np.zeros((50, 60), np.uint8)
    gray[10:30, 5:25] = 200
    assert breast_box(gray) == (10, 30, 5, 25)


def test_a_folder_of_dicom_films_keeps_a_woman_together_by_her_patient_id(tmp_path, dicom_factory):
    dicom_factory("benign/left.dcm", None, patient_id="W-17")
    dicom_factory("normal/right.dcm", None, patient_id="W-17")
    dicom_factory("normal/other.dcm", None, patient_id="W-18")
    patients = {s.path.rsplit("/", 1)[-1]: s.patient_id for s in from_folder(tmp_path)}
    assert patients == {"left.dcm": "W-17", "right.dcm": "W-17", "other.dcm": "W-18"}


def _centroid(weights: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(weights.shape)
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


@pytest.mark.parametrize(("side", "canvas"), [(400, 100), (100, 300)], ids=["shrunk", "enlarged"])
def test_an_roi_circle_on_the_resized_image_covers_its_full_size_pixels_resized(
    tmp_path, side, canvas
):
    """The circle CAM evaluation scores against lies where the full-size ROI's pixels land."""
    import cv2
    from PIL import Image

    from napari_pathreview.explain import mask_from_mias
    from napari_pathreview.training.datasets import Sample

    path = tmp_path / "film.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side), np.uint8)).save(path)
    circle = (side // 2 + 3, side // 3, 0.147 * side)  # on a pixel centre, as MIAS gives
    prepared = prepare_image(Sample(str(path), "benign", "w1", rois=(circle,)), canvas)
    full = mask_from_mias([_Circle(*circle)], (side, side), source_shape=(side, side))
    interpolation = cv2.INTER_AREA if side > canvas else cv2.INTER_NEAREST
    resized = cv2.resize(full.astype(np.float32), (canvas, canvas), interpolation=interpolation)
    drawn = mask_from_mias(
        [_Circle(*prepared.rois[0])], (canvas, canvas), source_shape=(canvas, canvas)
    )
    assert np.abs(_centroid(drawn) - _centroid(resized)).max() < 0.15  # was 0.4 / 1 px off
    overlap = (drawn & (resized > 0.5)).sum() / (drawn | (resized > 0.5)).sum()
    assert overlap > 0.95


class _Circle:
    def __init__(self, row: float, col: float, radius: float) -> None:
        self.row, self.col, self.radius = row, col, radius
