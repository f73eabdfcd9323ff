"""The slide engine: tiling at the model's µm/px, tissue, streaming, alignment, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
import torch
from slide_fixtures import MODEL_UM, register_tiny, tissue_slide, write_slide

from napari_pathreview.errors import ImageReadError, SettingError
from napari_pathreview.inference import Predictor
from napari_pathreview.inference.heatmap import (
    HEATMAP_COLORMAP,
    fill_heatmap,
    heatmap_layer,
)
from napari_pathreview.inference.layer_slide import as_slide
from napari_pathreview.inference.progress import Progress
from napari_pathreview.inference.slides import (
    NoTissueError,
    SlideBatch,
    SlideResult,
    SlideScaleError,
    SlideSettings,
    SlideStart,
    iter_slide,
    plan_grid,
    predict_slide,
)
from napari_pathreview.inference.tissue import detect_tissue


@pytest.fixture
def predictor(registry) -> Predictor:
    return Predictor.from_registry(register_tiny(registry), device="cpu", batch_size=8)


@pytest.fixture
def slide_path(tmp_path):
    return write_slide(tmp_path / "slide.tif", tissue_slide())


def test_tiles_are_read_on_the_nearest_finer_level_and_area_resized(slide_path) -> None:
    source = as_slide(slide_path)  # levels at 0.25, 0.5, 1.0 µm/px
    at_half = plan_grid(source, (64, 64), SlideSettings(), MODEL_UM)
    assert (at_half.level, at_half.read_size, at_half.um_per_px) == (1, (64, 64), 0.5)
    at_07 = plan_grid(source, (64, 64), SlideSettings(), 0.7)
    assert at_07.level == 1 and at_07.read_size == (90, 90)  # 64 px × 0.7 / 0.5
    finer = plan_grid(source, (64, 64), SlideSettings(), 0.2)  # finer than the scan
    assert finer.level == 0 and finer.read_size == (51, 51)


def test_a_model_sees_its_own_resolution_on_slides_of_different_scans(tmp_path, predictor) -> None:
    image = tissue_slide(1024, 1536)
    fine = write_slide(tmp_path / "fine.tif", image, um_per_px=0.25)
    half = cv2_half(image)
    coarse = write_slide(tmp_path / "coarse.tif", half, um_per_px=0.5)
    a = predict_slide(predictor, as_slide(fine))
    b = predict_slide(predictor, as_slide(coarse))
    assert a.grid.shape == b.grid.shape == (8, 12)
    assert a.grid.um_per_px == b.grid.um_per_px == MODEL_UM
    np.testing.assert_array_equal(a.coverage, b.coverage)
    np.testing.assert_allclose(a.prob_maps, b.prob_maps, atol=2e-3)


def cv2_half(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(
        image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA
    )


def test_a_card_without_resolution_is_refused_saying_what_to_set(registry, slide_path) -> None:
    pred = Predictor.from_registry(register_tiny(registry, None, "nores"), device="cpu")
    with pytest.raises(SlideScaleError, match="pixel_size.*--model-um-per-px.*preview"):
        next(iter_slide(pred, as_slide(slide_path)))


def test_a_model_with_a_whole_image_intensity_rule_is_refused_before_any_tile_is_read(
    registry, slide_path
) -> None:
    """On a slide and on a large image tiled by the Predictor alike."""
    from napari_pathreview.errors import InvalidInputError

    rule = {"channels": "grey_to_rgb", "intensity": "breast"}
    pred = Predictor.from_registry(
        register_tiny(registry, name="stretched", preprocess=rule), device="cpu"
    )
    with pytest.raises(InvalidInputError, match=r"stretched@1 applies the 'breast' intensity"):
        next(iter_slide(pred, as_slide(slide_path)))
    with pytest.raises(InvalidInputError, match=r"stretched@1 applies the 'breast' intensity"):
        pred.predict_tiled(tissue_slide())


def test_a_slide_without_scale_is_refused_unless_preview_is_asked_for(tmp_path, predictor) -> None:
    path = write_slide(tmp_path / "noscale.tif", tissue_slide(), um_per_px=None)
    with pytest.raises(SlideScaleError, match="--slide-um-per-px"):
        next(iter_slide(predictor, as_slide(path)))
    preview = predict_slide(predictor, as_slide(path), SlideSettings(mode="preview"))
    assert preview.grid.um_per_px is None and preview.grid.n_cells <= 100


def test_a_slide_far_coarser_than_the_model_is_refused_before_its_grid_is_planned(
    tmp_path,
) -> None:
    """A TIFF stating its default 72 dpi (352.8 µm/px) would give a 64-px tile 0.09 slide
    pixels: millions of cells, a run that never ends."""
    path = write_slide(tmp_path / "dpi72.tif", tissue_slide(250, 300), um_per_px=25400 / 72)
    with pytest.raises(SlideScaleError, match=r"706× coarser.*72 dpi.*--mpp"):
        plan_grid(as_slide(path), (64, 64), SlideSettings(), MODEL_UM)
    given = plan_grid(as_slide(path, um_per_px=0.25), (64, 64), SlideSettings(), MODEL_UM)
    assert given.shape == (2, 3)  # 128-px tiles at 0.25 µm/px


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_k", 0),
        ("max_failed", 1.5),
        ("preview_max_tiles", 0),
        ("prefetch", 0),
        ("overlap", -0.1),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_field(field: str, value: float) -> None:
    """Python callers get the field name (the CLI names its flag instead); top_k=0 used to be
    read as 1 and max_failed=1.5 as "never stop", silently."""
    with pytest.raises(SettingError, match=rf"^{field} must be .*, got {value}$"):
        SlideSettings(**{field: value})


def test_tissue_mask_keeps_tissue_and_drops_pen_glass_and_specks() -> None:
    image = tissue_slide(256, 256)
    image[20:30, 10:240] = (30, 160, 60)  # green marker stroke across the glass and tissue
    image[240:243, 240:243] = (170, 100, 150)  # a speck of dust-coloured debris
    mask = detect_tissue(image, min_object_px=32)
    yy, xx = np.mgrid[0:256, 0:256]
    ellipse = ((yy - 128) / 102.4) ** 2 + ((xx - 128) / 102.4) ** 2 < 1
    assert mask[ellipse & (abs(yy - 25) > 8)].mean() > 0.97
    assert not mask[20:30].any()
    assert not mask[~ellipse].any()


def test_run_streams_start_batches_and_result_with_tile_progress(predictor, slide_path) -> None:
    events = list(iter_slide(predictor, as_slide(slide_path)))
    start, *batches, result = events
    assert isinstance(start, SlideStart) and isinstance(result, SlideResult)
    assert all(isinstance(b, SlideBatch) for b in batches)
    assert [b.done for b in batches] == sorted(b.done for b in batches)
    assert batches[-1].done == start.n_tiles == int(result.coverage.sum()) > 0
    assert result.tiles_per_s > 0 and "tiles/s" in batches[0].message
    assert 0 < result.tissue_area_mm2 < 512 * 768 * 0.25**2 / 1e6


def test_a_blank_slide_is_refused_before_the_model_runs(predictor, tmp_path) -> None:
    glass = np.full((384, 512, 3), 240, np.uint8)
    steps = iter_slide(predictor, as_slide(write_slide(tmp_path / "glass.tif", glass)))
    with pytest.raises(NoTissueError, match=r"glass\.tif: no tile at .* holds 25% tissue") as error:
        next(steps)  # before SlideStart: no empty heatmap, no NaN slide decision
    assert "--min-tissue" in str(error.value) and "--no-tissue" in str(error.value)


def test_cancel_stops_within_one_batch(predictor, slide_path) -> None:
    cancel = threading.Event()
    steps = iter_slide(predictor, as_slide(slide_path), SlideSettings(batch_size=4), cancel)
    assert isinstance(next(steps), SlideStart)
    first = next(steps)
    cancel.set()
    rest = list(steps)
    assert isinstance(first, SlideBatch) and first.done == 4
    assert len(rest) == 1 and isinstance(rest[0], Progress) and rest[0].cancelled


def test_heatmap_lines_up_with_the_slide_at_every_level(predictor, tmp_path) -> None:
    # 800 px at 0.25 µm/px in cells of 128 px at most: 7 cells of 114.29 px, not whole pixels
    path = write_slide(tmp_path / "half.tif", tissue_slide(512, 800, left_of=343))
    source = as_slide(path)
    events = list(iter_slide(predictor, source, SlideSettings(min_tissue=0.5)))
    data, kwargs, kind = heatmap_layer(events[0], "malignant")
    assert kind == "image" and data.shape == events[-1].grid.shape
    scale, translate = np.array(kwargs["scale"]), np.array(kwargs["translate"])
    shape = np.array(data.shape)
    first_edge = translate - scale / 2  # world position of the map's top-left corner
    last_edge = translate + (shape - 0.5) * scale
    for level, down in enumerate(source.level_downsamples):
        level_shape = np.array(source.level_shapes[level])
        # level pixels cover world [k·d − 0.5, (k+1)·d − 0.5]: compare corners in level pixels
        assert np.all(np.abs((first_edge + 0.5) / down) <= 1.0)
        assert np.all(np.abs((last_edge + 0.5) / down - level_shape) <= 1.0)
    # tissue ends at column 343 ≈ 3 cells: the classified cells end there in world coordinates
    cols = np.flatnonzero(events[-1].coverage.any(axis=0))
    assert cols.max() == 2
    tissue_edge_world = 343 - 0.5
    assert abs(translate[1] + (cols.max() + 0.5) * scale[1] - tissue_edge_world) <= 1.0


def test_heatmap_layer_fills_in_with_transparent_low_end_and_auto_limits(
    predictor, slide_path
) -> None:
    start, *batches, result = list(iter_slide(predictor, as_slide(slide_path)))
    data, kwargs, _ = heatmap_layer(start, "malignant")
    assert HEATMAP_COLORMAP["colors"][0][3] == 0.0 and kwargs["colormap"] is HEATMAP_COLORMAP
    assert "malignant" in kwargs["name"] and "tinyslide@1" in kwargs["name"]
    assert "0.5 µm/px" in kwargs["name"]
    assert not data.any()
    for batch in batches:
        fill_heatmap(data, batch, 1)
    np.testing.assert_allclose(data[result.coverage], result.prob_maps[1][result.coverage])
    assert kwargs["contrast_limits"] == (0.0, 1.0)  # a probability's colour means one value


def _corrupt_tile(path, level: int, index: int) -> None:
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[level].keyframe
        offset, size = page.dataoffsets[index], page.databytecounts[index]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\x00garbage" * (size // 8))


def test_a_corrupt_tile_is_skipped_and_counted(predictor, tmp_path) -> None:
    path = write_slide(tmp_path / "bad.tif", tissue_slide(1024, 1536))
    _corrupt_tile(path, 1, 7)  # level 1 is the read level (0.5 µm/px); tile 7 has tissue
    result = predict_slide(predictor, as_slide(path), SlideSettings(max_failed=0.3))
    assert 1 <= result.n_failed <= 4 and result.coverage.sum() > 0


def test_a_slide_whose_tiles_cannot_be_read_stops_with_its_name(predictor, tmp_path) -> None:
    path = write_slide(tmp_path / "gone.tif", tissue_slide())
    source = as_slide(path)
    with tifffile.TiffFile(path) as tif:
        count = len(tif.series[0].levels[1].keyframe.dataoffsets)
    for index in range(count):
        _corrupt_tile(path, 1, index)
    with pytest.raises(ImageReadError, match="gone.tif"):
        predict_slide(predictor, source)


class _OomAboveTwo(torch.nn.Module):
    """Raises the CUDA out-of-memory error for batches over two (none exists on a CPU)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_batch_and_the_run_goes_on(predictor, slide_path) -> None:
    reference = predict_slide(predictor, as_slide(slide_path))
    wrapped = _OomAboveTwo(predictor.model)
    predictor.model = wrapped
    result = predict_slide(predictor, as_slide(slide_path), SlideSettings(batch_size=8))
    assert predictor.batch_size == 2 and wrapped.sizes[:3] == [8, 4, 2]
    np.testing.assert_allclose(result.prob_maps, reference.prob_maps, atol=1e-5)


def test_a_slide_truncated_mid_run_stops_with_its_name(predictor, tmp_path) -> None:
    path = write_slide(tmp_path / "vanishing.tif", tissue_slide(1024, 1536))
    steps = iter_slide(predictor, as_slide(path), SlideSettings(batch_size=4, read_workers=1))
    assert isinstance(next(steps), SlideStart)
    with open(path, "r+b") as handle:  # the file shrinks under the reader (a network drop)
        handle.truncate(4096)
    with pytest.raises(ImageReadError, match="vanishing.tif"):
        list(steps)
