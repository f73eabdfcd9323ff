"""MIAS training sizes each film as the viewer does: its circles in its own pixels, its pixel
size from the reader (a 256² copy of a 1024² film at 0.8 mm, not 0.2), whatever size it is
stored at; a film the reader cannot size is refused before training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from napari_pathreview.training.datasets import DatasetError, Sample, from_mias

CIRCLED = ("mdb001", "mdb005", "mdb010", "mdb023", "mdb028")  # mdb005 holds two circles
NORMAL = ("mdb003",)
TRAINED = ("mdb009", "mdb010", "mdb017", "mdb018", "mdb019", "mdb020")  # women 5, 9, 10 (benign)
TRAINED += ("mdb023", "mdb024", "mdb027", "mdb028", "mdb057", "mdb058")  # 12, 14, 29 (malignant)
PIXEL_SIZE = 1.6  # mm: a 1024² film at 0.2 mm and its 256² copy at 0.8 mm both become 128²


def mias_folder(shared_data: Path, folder: Path, films: dict[str, int]) -> Path:
    """Real mini-MIAS films, each at the side given (1024: the file itself; else a copy
    resized whole, as sample_data/demo/mammogram holds), beside the real annotation table."""
    source = shared_data / "mias_full"
    if not (source / "labels.csv").is_file():
        pytest.skip(f"the full mini-MIAS set is absent: {source}")
    folder.mkdir(parents=True)
    shutil.copy(source / "labels.csv", folder / "labels.csv")
    for refnum, side in films.items():
        film = source / f"{refnum}.png"
        if side == 1024:
            shutil.copy(film, folder / film.name)
        else:
            with Image.open(film) as image:
                image.resize((side, side), Image.Resampling.BOX).save(folder / film.name)
    return folder


@pytest.fixture(scope="module")
def full_and_small(shared_data: Path, tmp_path_factory) -> tuple[dict, dict]:
    """from_mias over the same films at 1024² and as 256² copies, by file stem."""
    base = tmp_path_factory.mktemp("mias_sizes")
    films = CIRCLED + NORMAL
    full = mias_folder(shared_data, base / "full", dict.fromkeys(films, 1024))
    small = mias_folder(shared_data, base / "small", dict.fromkeys(films, 256))
    by_stem = [{Path(s.path).stem: s for s in from_mias(f)} for f in (full, small)]
    return by_stem[0], by_stem[1]


def test_a_256_px_copy_carries_the_full_films_circles_divided_by_four(full_and_small):
    full, small = full_and_small
    assert sum(len(full[r].rois) for r in CIRCLED) == 6 and not small["mdb003"].rois
    for refnum in CIRCLED:
        assert len(small[refnum].rois) == len(full[refnum].rois)
        for (row, col, radius), got in zip(full[refnum].rois, small[refnum].rois, strict=True):
            # pixel centres onto pixel centres: (i + ½)/4 − ½, within ½ px of i/4
            expected = ((row + 0.5) / 4 - 0.5, (col + 0.5) / 4 - 0.5, radius / 4)
            np.testing.assert_allclose(got, expected, atol=1e-9)
            assert abs(got[0] - row / 4) < 0.5 and abs(got[1] - col / 4) < 0.5


def test_training_places_each_circle_where_the_viewer_draws_it(full_and_small):
    from napari_pathreview.io.layers import layers_for_path

    _, small = full_and_small
    for refnum in CIRCLED:
        layers = layers_for_path(small[refnum].path)
        shapes = next(data for data, _, kind in layers if kind == "shapes")
        corners = [np.asarray(ellipse) for ellipse in shapes]  # each circle's bounding box
        drawn = [(*box.mean(axis=0), np.ptp(box[:, 0]) / 2) for box in corners]
        np.testing.assert_allclose(drawn, small[refnum].rois, atol=1e-9)


def _positives_mm(samples: dict[str, Sample]) -> dict[str, np.ndarray]:
    """Each circled film's positive patch centres in mm, drawn by the lesion sampler at the
    recipe's 1.6 mm from each film's own pixel size."""
    from napari_pathreview.training.lesion import prepare_lesion_image
    from napari_pathreview.training.lesion_scale import resampling_of
    from napari_pathreview.training.patches import PatchSampling, sample_patches
    from napari_pathreview.training.recipe import load_recipe

    recipe = load_recipe(
        {
            "modality": "mammogram",
            "data": {"source": "mias", "root": "unused", "task": "mammogram"},
            "lesion": {"enabled": True, "pixel_size": PIXEL_SIZE, "pixel_unit": "mm"},
        }
    )
    rule = resampling_of(recipe)
    images = [prepare_lesion_image(samples[r], 1, rule, "mammogram") for r in CIRCLED]
    assert {im.pixels.shape[:2] for im in images} == {(128, 128)}
    config = PatchSampling(
        patch_size=8, context=0, positives_per_image=400, negatives_per_image=0, max_per_patient=900
    )
    patches = sample_patches(images, config, negative_class=0)
    positive = patches.kinds == 0
    return {
        refnum: patches.centres[positive & (patches.image_index == i)] * PIXEL_SIZE
        for i, refnum in enumerate(CIRCLED)
    }


def test_lesion_patches_of_256_px_copies_fall_on_the_lesion_as_the_full_films_do(full_and_small):
    full, small = full_and_small
    on_full, on_small = _positives_mm(full), _positives_mm(small)
    for refnum in CIRCLED:
        assert len(on_small[refnum]) == len(on_full[refnum]) == 400
        # inside the film's circles (Info.txt: 0.2 mm pixels), within one training pixel
        circles = np.array([(r, c, rad) for r, c, rad in full[refnum].rois]) * 0.2
        reach = np.linalg.norm(on_small[refnum][:, None] - circles[None, :, :2], axis=2)
        assert (reach <= circles[:, 2] + PIXEL_SIZE).any(axis=1).all(), refnum
        shift = np.abs(on_small[refnum].mean(axis=0) - on_full[refnum].mean(axis=0))
        assert shift.max() < PIXEL_SIZE, (refnum, shift)


def _train(recipe: Path, out: Path, home: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "pathreview"
    tiny = [
        "split.folds=2",
        "phases.*.epochs=1",
        f"lesion.pixel_size={PIXEL_SIZE * 2}",
        "lesion.patch_size=16",
        "lesion.stride=8",
        "lesion.context=2",
        "lesion.margin=2",
        "lesion.mil_epochs=2",
        "eval.bootstrap=20",
        "register.enabled=false",
    ]
    command = [str(script), "train", str(recipe), "--out", str(out)]
    command += [arg for setting in tiny for arg in ("--set", setting)]
    env = {**os.environ, "PATHREVIEW_HOME": str(home)}
    return subprocess.run(command, capture_output=True, text=True, env=env)


def _recipe(tmp_path: Path, root: Path) -> Path:
    recipe = {
        "name": "mias_sizes",
        "seed": 0,
        "modality": "mammogram",
        "data": {"source": "mias", "root": str(root), "task": "mammogram"},
        "split": {"protocol": "patient_kfold", "folds": 2, "val_fraction": 0.25},
        "model": {"architecture": "test_resnet"},
        "optim": {"batch_size": 32, "lr": 0.005},
        "schedule": {"name": "none"},
        "phases": [{"name": "all", "epochs": 2}],
        "lesion": {"enabled": True, "pixel_unit": "mm", "negative_class": "normal"},
    }
    path = tmp_path / "mias_sizes.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_folder_of_1024_and_256_px_films_trains_a_lesion_recipe(shared_data, tmp_path):
    sides = {refnum: (1024, 256)[i % 2] for i, refnum in enumerate(TRAINED)}  # a woman's two
    root = mias_folder(shared_data, tmp_path / "mixed", sides)
    done = _train(_recipe(tmp_path, root), tmp_path / "runs", tmp_path / "home")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((next((tmp_path / "runs").iterdir()) / "metrics.json").read_text())
    assert metrics["n_images"] == 12 and metrics["n_images_with_roi"] == 6
    assert metrics["pixel_size"] == PIXEL_SIZE * 2
    assert metrics["maps_vs_roi"]["patch_map"]["iou"]["n"] == 6


def test_a_film_the_reader_cannot_size_is_refused_by_name_before_training(shared_data, tmp_path):
    root = mias_folder(shared_data, tmp_path / "cropped", dict.fromkeys(TRAINED, 256))
    with Image.open(root / "mdb010.png") as film:
        film.crop((0, 0, 256, 200)).save(root / "mdb010.png")  # a crop: no MIAS film's shape
    with pytest.raises(DatasetError, match=r"mdb010\.png: a 256×200 px mammogram image that"):
        from_mias(root)
    done = _train(_recipe(tmp_path, root), tmp_path / "runs", tmp_path / "home")
    assert done.returncode != 0
    assert "mdb010.png: a 256×200 px mammogram image that states no pixel size" in done.stderr
    assert "Traceback" not in done.stderr
    assert not any((tmp_path / "runs").glob("*/fold0"))  # refused before any fold began


def test_an_image_of_unknown_size_is_refused_by_name_unless_the_recipe_sizes_it(tmp_path):
    from napari_pathreview.training.lesion import prepare_lesion_image
    from napari_pathreview.training.lesion_scale import Resampling
    from napari_pathreview.training.patches import PatchError

    Image.fromarray(np.full((64, 48), 90, np.uint8)).save(tmp_path / "film7.png")  # no size
    sample = Sample(str(tmp_path / "film7.png"), "benign", "7", rois=((30.0, 20.0, 6.0),))
    with pytest.raises(PatchError, match=r"film7\.png: a 48×64 px image whose pixel size"):
        prepare_lesion_image(sample, 1, Resampling(1.6, "mm"), "mammogram")
    sized = prepare_lesion_image(sample, 1, Resampling(1.6, "mm", fallback=0.8), "mammogram")
    assert sized.pixels.shape[:2] == (32, 24)  # lesion.source_pixel_size: 0.8 mm → ½
