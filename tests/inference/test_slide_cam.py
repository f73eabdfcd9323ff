"""Slide CAMs at the model's resolution: alignment with the slide, no seams, the Analyze path."""

from __future__ import annotations

import numpy as np
import pytest
from slide_fixtures import MODEL_UM, register_tiny, tissue_slide, write_slide

from napari_pathreview.inference import Predictor
from napari_pathreview.inference.layer_slide import as_slide
from napari_pathreview.inference.slide_cam import (
    cam_grid,
    iter_slide_cam,
    map_shape,
    tile_box0,
)
from napari_pathreview.inference.slides import SlideSettings, plan_grid
from napari_pathreview.inference.tiling import last_result


@pytest.fixture
def predictor(registry) -> Predictor:
    return Predictor.from_registry(register_tiny(registry), device="cpu", batch_size=8)


def _darkness(tiles, cancel):
    """A CAM that is the tile's own darkness: where it lands shows where the tile was read."""
    return np.stack([1.0 - t.mean(axis=2).astype(np.float32) / 255.0 for t in tiles])


def _stitch(predictor, source, explainer, settings=None):
    settings = settings or SlideSettings()
    grid = plan_grid(source, predictor.spec.hw, settings, MODEL_UM)
    cam = last_result(iter_slide_cam(predictor, source, grid, settings, 1, explainer=explainer))
    return grid, cam


def test_matched_cam_lines_up_with_the_slide_within_one_map_pixel(tmp_path, predictor) -> None:
    edge = 500  # tissue in columns < 500 of a 1000-px slide at 0.25 µm/px (model: 0.5 µm/px)
    path = write_slide(tmp_path / "s.tif", tissue_slide(600, 1000, left_of=edge))
    grid, cam = _stitch(predictor, as_slide(path), _darkness)
    assert grid.level == 1 and cam.cam.shape == map_shape(grid.shape)
    pixel = 1000 / cam.cam.shape[1]  # level-0 px per map px (the layer's scale)
    assert cam.scale[1] == pytest.approx(pixel)
    rows = cam.cam[2:-2]  # the edge: where each row falls below half the tissue's darkness
    level = np.median(rows[:, : int(300 / pixel)])
    crossing = (rows < level / 2).argmax(axis=1)  # first map column past the edge
    centres = (crossing + 0.5) * pixel  # map-pixel centres in level-0 px
    assert np.all(np.abs(centres - edge) <= pixel)


def test_stitched_cam_has_no_tile_seams_on_a_smooth_field(tmp_path, predictor) -> None:
    yy, xx = np.mgrid[0:768, 0:768].astype(np.float32)
    field = 0.5 + 0.25 * np.sin(xx / 90.0) + 0.2 * np.cos(yy / 120.0)
    image = np.repeat((60 + 140 * field)[..., None], 3, axis=2).astype(np.uint8)
    source = as_slide(write_slide(tmp_path / "smooth.tif", image))
    settings = SlideSettings(tissue=False)

    def per_tile_scaled(tiles, cancel):  # min–max per tile, as CAM methods do
        maps = _darkness(tiles, cancel)
        low = maps.min(axis=(1, 2), keepdims=True)
        return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low + 1e-6)

    grid, cam = _stitch(predictor, source, per_tile_scaled, settings)
    pixel = 768 / cam.cam.shape[1]
    explained = cam_grid(source, grid, settings, MODEL_UM)
    edges = set()
    for col in range(explained.shape[1]):
        _, x0, _, w = tile_box0(explained, 0, col)
        edges |= {int(round(x0 / pixel)), int(round((x0 + w) / pixel))}
    grad = np.abs(np.diff(cam.cam, axis=1))[:, 2:-2]  # step from column c+2 to c+3
    border = [c - 3 for c in sorted(edges) if 3 <= c < cam.cam.shape[1] - 3]
    inside = [c for c in range(grad.shape[1]) if c not in border and c + 1 not in border]
    assert border and inside
    assert grad[:, border].max() <= 1.1 * grad[:, inside].max()


def test_analyse_explains_a_slide_at_the_models_resolution(registry, tmp_path) -> None:
    from napari_pathreview.inference.analysis import AnalysisRequest, AnalysisResult, analyse
    from napari_pathreview.io import load_image

    ref = register_tiny(registry)
    path = write_slide(tmp_path / "s.tif", tissue_slide(512, 768))
    image = load_image(path)
    request = AnalysisRequest(model_ref=ref, device="cpu", tta="none", qc=False)
    items = list(analyse(request, image.levels, modality="histology", um_per_px=0.25))
    result = items[-1]
    assert isinstance(result, AnalysisResult)
    grid = result.tiled.grid
    assert grid.um_per_px == MODEL_UM and grid.level == 1  # read at 0.5 µm/px, not a preview
    assert result.cam.cam.shape == map_shape(grid.shape)
    assert result.cam_scale == pytest.approx(512 / result.cam.cam.shape[0])
    assert np.isfinite(result.cam.cam).all()
    assert result.cam.cam[:, :2].max() == 0.0  # the glass margin was not explained
    assert result.cam.cam.max() > 0.0


def test_slide_cam_stops_within_one_batch_when_cancelled(tmp_path, predictor) -> None:
    import threading

    from napari_pathreview.inference.progress import Progress

    source = as_slide(write_slide(tmp_path / "s.tif", tissue_slide()))
    settings = SlideSettings()
    grid = plan_grid(source, predictor.spec.hw, settings, MODEL_UM)
    cancel = threading.Event()
    steps = iter_slide_cam(predictor, source, grid, settings, 1, cancel=cancel, explainer=_darkness)
    first = next(steps)
    cancel.set()
    rest = list(steps)
    assert isinstance(first, Progress) and not first.cancelled
    assert len(rest) == 1 and rest[0].cancelled and rest[0].done == predictor.batch_size
