"""Patch datasets from ROIs: where positives and negatives come from, quotas, bad ROIs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_pathreview.io.geojson import Roi
from napari_pathreview.training.datasets import Sample
from napari_pathreview.training.patches import (
    LesionImage,
    PatchError,
    PatchSampling,
    check_classes_have_rois,
    geojson_rois,
    labels_rois_mask,
    rois_mask,
    sample_patches,
    tissue_mask,
)

SIZE = 80


def _image(label: int, patient: str, roi=None, tissue=None) -> LesionImage:
    pixels = np.full((SIZE, SIZE, 3), 100, np.uint8)
    mask = (
        rois_mask([roi], (SIZE, SIZE), 1.0, f"img{patient}")
        if roi
        else np.zeros((SIZE, SIZE), bool)
    )
    tissue = np.ones((SIZE, SIZE), bool) if tissue is None else tissue
    return LesionImage(f"img{patient}.png", label, patient, pixels, mask, tissue)


def test_positives_lie_inside_the_roi_and_negatives_keep_the_margin():
    image = _image(1, "1", roi=(40, 40, 8))
    config = PatchSampling(patch_size=16, context=0, margin=5, background_fraction=0.0)
    patches = sample_patches([image], config, negative_class=0)
    kinds = patches.kinds
    positives, negatives = patches.centres[kinds == 0], patches.centres[kinds == 1]
    assert len(positives) and len(negatives)
    assert all(image.roi_mask[r, c] for r, c in positives)
    assert (patches.labels[kinds == 0] == 1).all() and (patches.labels[kinds == 1] == 0).all()
    distance = np.hypot(negatives[:, 0] - 40, negatives[:, 1] - 40)
    assert distance.min() > 8 + 5 - 1
    assert patches.pixels.shape[1:] == (16, 16, 3)


def test_negatives_come_from_tissue_and_background_only_at_its_share():
    tissue = np.zeros((SIZE, SIZE), bool)
    tissue[:, :40] = True
    image = _image(0, "1", tissue=tissue)
    config = PatchSampling(
        patch_size=8, context=0, negatives_per_image=20, background_fraction=0.25
    )
    patches = sample_patches([image], config, negative_class=0)
    counts = patches.counts()
    assert counts["background"] == 5 and counts["negative"] == 15
    assert (patches.centres[patches.kinds == 1][:, 1] < 40).all()
    assert (patches.centres[patches.kinds == 2][:, 1] >= 40).all()


def test_a_patient_with_many_images_gets_no_more_than_the_quota():
    many = [_image(1, "big", roi=(40, 40, 10)) for _ in range(200)]
    one = [_image(1, "small", roi=(40, 40, 10))]
    config = PatchSampling(patch_size=8, context=0, max_per_patient=64)
    patches = sample_patches(many + one, config, negative_class=0)
    per_image = np.bincount(patches.image_index, minlength=201)
    assert per_image[:200].sum() <= 64 * 2  # at least 2 per image when images outnumber the quota
    assert per_image[200] >= 16  # the single-image patient fills its own quota


def test_labelled_images_without_roi_give_no_patches_they_are_bags():
    weak = _image(2, "1")
    patches = sample_patches([weak], PatchSampling(patch_size=8, context=0), negative_class=0)
    assert len(patches) == 0


def test_hard_negatives_are_the_previous_models_highest_scores():
    image = _image(0, "1")
    score = np.zeros((SIZE, SIZE))
    score[5:10, 60:70] = 1.0  # a previous model's false positives
    config = PatchSampling(
        patch_size=8, context=0, negatives_per_image=10, background_fraction=0.0, hard_fraction=0.5
    )
    patches = sample_patches([image], config, negative_class=0, hard_maps=[score])
    hard = patches.centres[patches.kinds == 3]
    assert len(hard) == 5
    assert all(score[r, c] == 1.0 for r, c in hard)


def test_circle_rois_scale_with_the_physical_resolution():
    mask = rois_mask([(100.0, 60.0, 20.0)], (100, 100), 0.5, "mdb001.png")
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - 50) < 1 and abs(cols.mean() - 30) < 1
    assert abs(mask.sum() - np.pi * 10**2) < 0.1 * np.pi * 10**2


def test_roi_outside_the_image_is_refused_naming_the_image():
    with pytest.raises(PatchError, match="mdb042.png ROI 0 lies outside"):
        rois_mask([(500.0, 500.0, 10.0)], (100, 100), 1.0, "mdb042.png")


def test_roi_outside_a_resampled_image_is_reported_in_the_files_pixels():
    """The reader drew the ROI on the file (200 × 400 px here); the 100 × 200 working size after
    resampling to the lesion pixel size would only confuse them."""
    square = Roi(
        np.array([[300.0, 500.0], [300.0, 560.0], [340.0, 560.0], [340.0, 500.0]]), "polygon"
    )
    with pytest.raises(PatchError) as refused:
        rois_mask([square], (100, 200), 0.5, "slide7.png")
    message = str(refused.value)
    assert message.startswith("slide7.png ROI 0 lies outside the image")
    assert "rows 300–340 and columns 500–560" in message
    assert "200 rows × 400 columns" in message


def test_empty_polygon_is_refused_naming_the_image():
    flat = Roi(np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]), "polygon")
    with pytest.raises(PatchError, match="slide7.png ROI 0: empty polygon"):
        rois_mask([flat], (50, 50), 1.0, "slide7.png")


def test_self_intersecting_polygon_is_repaired_to_both_lobes(caplog):
    bowtie = Roi(np.array([[10.0, 10.0], [40.0, 40.0], [10.0, 40.0], [40.0, 10.0]]), "polygon")
    with caplog.at_level("WARNING"):
        mask = rois_mask([bowtie], (50, 50), 1.0, "bow.png")
    assert "bow.png ROI 0: self-intersecting polygon repaired" in caplog.text
    assert mask[25, 14] and mask[25, 36]  # left and right lobes (row 25, either side)
    assert not mask[12, 25] and not mask[38, 25]  # the pinched top and bottom stay out


def test_geojson_ellipse_and_polygon_from_a_review_export(tmp_path: Path):
    from napari_pathreview.io.geojson import rois_to_geojson

    ellipse = Roi(np.array([[10.0, 10.0], [10.0, 30.0], [30.0, 30.0], [30.0, 10.0]]), "ellipse")
    square = Roi(np.array([[40.0, 40.0], [40.0, 50.0], [50.0, 50.0], [50.0, 40.0]]), "polygon")
    text = json.dumps(rois_to_geojson([ellipse, square]))
    rois = geojson_rois(text, tmp_path, "x.png")
    mask = rois_mask(rois, (60, 60), 1.0, "x.png")
    assert mask[20, 20] and mask[45, 45] and not mask[11, 11] and not mask[35, 35]
    (tmp_path / "roi.geojson").write_text(text)
    assert len(geojson_rois("roi.geojson", tmp_path, "x.png")) == 2


def test_napari_labels_mask_file_is_resized_to_the_training_grid(tmp_path: Path):
    labels = np.zeros((40, 40), np.uint8)
    labels[10:20, 10:20] = 3
    cv2.imwrite(str(tmp_path / "labels.png"), labels)
    mask = labels_rois_mask(tmp_path / "labels.png", (20, 20), "x.png")
    assert mask.sum() == 25 and mask[7, 7]


def test_a_lesion_class_without_any_roi_is_refused_naming_the_class():
    images = [_image(0, "1"), _image(1, "2", roi=(40, 40, 5)), _image(2, "3")]
    with pytest.raises(PatchError, match="class 'malignant' has 1 image"):
        check_classes_have_rois(images, ("normal", "benign", "malignant"), 0)


def test_mammogram_tissue_is_the_breast_not_the_film_label():
    pixels = np.zeros((60, 60, 3), np.uint8)
    pixels[:, :30] = 120  # breast
    pixels[50:55, 50:55] = 250  # film label
    mask = tissue_mask(pixels, "mammogram")
    assert mask[:, :30].all() and not mask[52, 52]


def test_prepare_resamples_image_and_rois_to_the_pixel_size(tmp_path: Path):
    from napari_pathreview.training.lesion import prepare_lesion_image

    image = np.full((200, 200), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "mdb001.png"), image)
    sample = Sample(str(tmp_path / "mdb001.png"), "benign", "1", rois=((100.0, 50.0, 20.0),))
    prepared = prepare_lesion_image(sample, 1, 0.25, "mammogram")
    assert prepared.pixels.shape == (50, 50, 3)
    rows, cols = np.nonzero(prepared.roi_mask)
    assert abs(rows.mean() - 25) < 1 and abs(cols.mean() - 12.5) < 1


def test_qupath_roi_on_a_pyramid_marks_the_lesion_at_the_training_resolution(tmp_path: Path):
    from napari_pathreview.io import write_pyramidal_tiff
    from napari_pathreview.training.lesion import prepare_lesion_image

    image = np.full((1024, 768, 3), 230, np.uint8)
    image[400:600, 300:500] = (120, 40, 160)  # the lesion: level-0 rows 400-600, cols 300-500
    path = write_pyramidal_tiff(image, tmp_path / "slide.tif", n_levels=3, compression="deflate")
    ring = [[300, 400], [500, 400], [500, 600], [300, 600], [300, 400]]  # QuPath: level-0 [x, y]
    roi = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}}
    sample = Sample(str(path), "malignant", "1", extra={"roi_geojson": json.dumps(roi)})
    prepared = prepare_lesion_image(sample, 1, 0.5, "histology")
    assert prepared.pixels.shape == (512, 384, 3)
    lesion = prepared.pixels[..., 1] < 100
    overlap = (lesion & prepared.roi_mask).sum() / (lesion | prepared.roi_mask).sum()
    assert overlap > 0.95


def test_a_bad_roi_from_a_geojson_file_is_named_by_its_file_and_feature(tmp_path: Path):
    """The ROI number counts the shapes kept for the image; the reader edits a feature of a file."""
    inside = [[[10, 10], [30, 10], [30, 30], [10, 30], [10, 10]]]
    outside = [[[500, 500], [560, 500], [560, 540], [500, 540], [500, 500]]]
    features = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": c}}
        for c in (inside, outside)
    ]
    path = tmp_path / "slide7.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    rois = geojson_rois(str(path), tmp_path, "slide7.png")
    with pytest.raises(PatchError) as refused:
        rois_mask(rois, (100, 200), 0.5, "slide7.png")
    assert str(refused.value).startswith(f"slide7.png ROI 1 ({path} feature 1) lies outside")


def test_histology_background_patches_come_from_what_qc_calls_glass(shared_data: Path):
    """Pale pink stroma (e.g. RGB 254, 171, 242) is tissue, not an empty-glass example."""
    from napari_pathreview.stain.qc import tissue_mask as qc_tissue
    from napari_pathreview.training.lesion import prepare_lesion_image

    path = shared_data / "breakhis" / "SOB_M_DC-14-2773-40-004.png"  # pale pink stroma
    sample = Sample(str(path), "malignant", "1", rois=((230.0, 350.0, 60.0),))
    image = prepare_lesion_image(sample, 1, 0.5, "histology")
    patches = sample_patches([image], PatchSampling(patch_size=32, context=0), 0)
    background = patches.centres[patches.kinds == 2]
    assert len(background) > 0
    tissue = qc_tissue(image.pixels)
    assert not any(tissue[row, col] for row, col in background)
