"""Sliding-window inference: repeated tiles, background skipping, pyramids, stitched CAMs."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference import Predictor
from napari_pathreview.inference.tiled_cams import explain_tiled
from napari_pathreview.inference.tiling import tile_origins


@pytest.fixture
def predictor(binary_ref) -> Predictor:
    return Predictor.from_registry(binary_ref, device="cpu", batch_size=8)


def test_tile_origins_cover_the_edge() -> None:
    assert tile_origins(200, 64, 48) == [0, 48, 96, 136]
    assert tile_origins(50, 64, 48) == [0]


def test_repeated_tile_equals_single_tile_prediction(predictor, rng, tissue_like) -> None:
    tile = tissue_like(rng, 64, 64)
    image = np.tile(tile, (3, 4, 1))
    (single,) = predictor.predict([tile])
    tiled = predictor.predict_tiled(image, tile_size=64, overlap=0.0)
    assert tiled.n_tiles == 12 and tiled.n_skipped == 0
    expected = np.array(list(single.probabilities.values()), np.float32)
    np.testing.assert_allclose(tiled.tile_probabilities, np.tile(expected, (12, 1)), atol=1e-5)
    np.testing.assert_allclose(
        tiled.prob_maps,
        expected[:, None, None] * np.ones((1, *tiled.prob_maps.shape[1:])),
        atol=1e-5,
    )
    for how in ("mean", "max", "topk_mean"):
        assert tiled.aggregate[how]["malignant"] == pytest.approx(
            single.probabilities["malignant"], abs=1e-5
        )


def test_maps_align_with_the_image_in_napari_coordinates(predictor, rng, tissue_like) -> None:
    image = tissue_like(rng, 128, 192)
    tiled = predictor.predict_tiled(image, tile_size=64, overlap=0.5, cell=8)
    assert tiled.prob_maps.shape == (2, 16, 24)
    assert tiled.scale == (8.0, 8.0) and tiled.translate == (3.5, 3.5)
    assert tiled.coverage.all()


def test_background_tiles_are_skipped(predictor, rng, tissue_like) -> None:
    image = np.full((128, 128, 3), 245, np.uint8)
    image[:64, :64] = tissue_like(rng, 64, 64)
    tiled = predictor.predict_tiled(image, tile_size=64, overlap=0.0)
    assert (tiled.n_tiles, tiled.n_skipped) == (4, 3)
    assert tiled.coverage[: tiled.coverage.shape[0] // 2, : tiled.coverage.shape[1] // 2].all()
    assert not tiled.coverage[-1, -1]


def test_pyramid_level_from_dask_matches_numpy(predictor, rng, tissue_like) -> None:
    level0 = np.tile(tissue_like(rng, 64, 64), (4, 4, 1))
    level1 = level0[::2, ::2].copy()
    lazy = [da.from_array(level0, chunks=(64, 64, 3)), da.from_array(level1, chunks=(32, 32, 3))]
    from_dask = predictor.predict_tiled(lazy, level=1, tile_size=64, overlap=0.0)
    from_numpy = predictor.predict_tiled(level1, tile_size=64, overlap=0.0)
    np.testing.assert_allclose(from_dask.prob_maps, from_numpy.prob_maps, atol=1e-6)
    assert from_dask.scale == (2.0 * 16, 2.0 * 16)  # cell 16 level-1 px = 32 level-0 px


def test_missing_level_and_bad_overlap_are_rejected(predictor, rng, tissue_like) -> None:
    image = tissue_like(rng, 64, 64)
    with pytest.raises(InvalidInputError, match="level"):
        predictor.predict_tiled([image], level=2)
    with pytest.raises(InvalidInputError, match="overlap"):
        predictor.predict_tiled(image, overlap=1.0)


def test_tiled_cam_is_stitched_at_full_resolution(predictor, rng, tissue_like) -> None:
    image = np.full((96, 160, 3), 245, np.uint8)
    image[:, :64] = tissue_like(rng, 96, 64)
    result = explain_tiled(predictor, image, "gradcam", tile_size=64, overlap=0.25)
    assert result.cam.shape == (96, 160) and result.cam.dtype == np.float32
    assert result.cam[:, 112:].max() == 0.0  # background tiles carry no CAM
    assert result.cam[:, :48].max() > 0.0


def test_iter_predict_tiled_yields_grid_progress_then_the_result(
    predictor, rng, tissue_like
) -> None:
    from napari_pathreview.inference import Progress, iter_predict_tiled

    image = np.tile(tissue_like(rng, 64, 64), (3, 4, 1))
    items = list(iter_predict_tiled(predictor, image, tile_size=64, overlap=0.0))
    progress = [item for item in items if isinstance(item, Progress)]
    assert [p.done for p in progress] == [0, 8, 12] and {p.total for p in progress} == {12}
    assert items[-1].n_tiles == 12 and not any(p.cancelled for p in progress)


def test_tiled_generators_stop_within_one_batch_when_cancelled(predictor, rng, tissue_like) -> None:
    import threading

    from napari_pathreview.inference import Progress, iter_explain_tiled, iter_predict_tiled

    image = np.tile(tissue_like(rng, 64, 64), (3, 4, 1))
    for make in (iter_predict_tiled, iter_explain_tiled):
        cancel = threading.Event()
        steps = make(predictor, image, tile_size=64, overlap=0.0, cancel=cancel)
        first = next(steps)
        cancel.set()
        rest = list(steps)
        assert first.done == 0 and not first.cancelled
        assert len(rest) == 1 and isinstance(rest[0], Progress) and rest[0].cancelled
        assert rest[0].done == 8  # one batch of 8 ran, the second never started


def test_hann_stitching_leaves_no_seams_on_a_smooth_field() -> None:
    """Per-tile min–max rescaling of a smooth ramp: blended borders are no steeper than inside."""
    from napari_pathreview.inference.tiling import hann_window

    size, tile, stride = 256, 64, 32
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    field = np.sin(xx / 40.0) + np.cos(yy / 55.0)
    cam = np.zeros((size, size), np.float32)
    flat = np.zeros_like(cam)
    weight = np.zeros_like(cam)
    count = np.zeros_like(cam)
    for r0 in tile_origins(size, tile, stride):
        for c0 in tile_origins(size, tile, stride):
            part = field[r0 : r0 + tile, c0 : c0 + tile]
            scaled = (part - part.min()) / (part.max() - part.min())
            window = hann_window(tile, tile)
            cam[r0 : r0 + tile, c0 : c0 + tile] += scaled * window
            weight[r0 : r0 + tile, c0 : c0 + tile] += window
            flat[r0 : r0 + tile, c0 : c0 + tile] += scaled
            count[r0 : r0 + tile, c0 : c0 + tile] += 1
    borders = [c for c in range(1, size) if c % stride == 0]
    inside = [c for c in range(1, size) if c % stride not in (0,)]

    def steps(stitched: np.ndarray) -> tuple[float, float]:
        grad = np.abs(np.diff(stitched[:, 16:-16], axis=1))  # column c-1 → c
        return grad[:, [c - 17 for c in borders if 17 <= c < size - 16]].max(), grad[
            :, [c - 17 for c in inside if 17 <= c < size - 16]
        ].max()

    blended_border, blended_inside = steps(cam / weight)
    plain_border, plain_inside = steps(flat / count)
    assert plain_border > 2 * plain_inside  # the naive average shows the grid ...
    assert blended_border <= blended_inside * 1.05  # ... the Hann blend does not


@pytest.fixture
def he_field(sample_data) -> np.ndarray:
    """A 160×224 crop of a BreaKHis H&E field: tissue in every 64-px tile."""
    from napari_pathreview.io import load_image

    image = load_image(sample_data / "breakhis" / "SOB_M_DC-14-2523-40-010.png").levels[0]
    return np.ascontiguousarray(image[100:260, 200:424])


def _count_forwards(predictor: Predictor) -> tuple[list[int], object]:
    """Batch sizes of the real model's forward passes (a forward hook), and its handle."""
    inputs: list[int] = []
    hook = predictor.model.register_forward_hook(lambda m, i, out: inputs.append(out.shape[0]))
    return inputs, hook


@pytest.mark.parametrize("target", ["malignant", None], ids=["given-class", "decided-class"])
def test_a_tiled_cam_runs_each_tile_through_the_model_once(predictor, he_field, target) -> None:
    """Grad-CAM's forward gives the tile weights (the tiles used to be classified again) and,
    without a target class, the decision too (a first pass over the tiles used to decide it)."""
    tiles = predictor.predict_tiled(he_field, tile_size=64, overlap=0.25).n_tiles
    inputs, hook = _count_forwards(predictor)
    result = explain_tiled(
        predictor, he_field, "gradcam", target_class=target, tile_size=64, overlap=0.25
    )
    hook.remove()
    assert tiles > 8 and result.cam.max() > 0.0
    assert sum(inputs) == tiles
    assert len(inputs) == -(-tiles // 8)  # one forward per batch of 8


@pytest.mark.parametrize(
    ("model", "method", "tta"),
    [("binary_ref", "gradcam", "none"), ("binary_ref", "gradcam++", "flips"),
     ("subtype_ref", "gradcam", "none")],
    ids=["gradcam", "gradcam++-flips", "three-classes"],
)  # fmt: skip
def test_a_tiled_cam_without_a_target_is_the_two_pass_one(
    request, he_field, model: str, method: str, tta: str
) -> None:
    """The class decided from the CAM pass's own forwards is the one a first pass classifying
    every tile decides (the card's rule on the mean tile probability), and its map is exactly
    the map explaining that class given."""
    ref = request.getfixturevalue(model)
    predictor = Predictor.from_registry(ref, device="cpu", batch_size=8, tta=tta)
    field = he_field[:112, :160]  # 2×3 tiles
    kwargs = {"tile_size": 64, "overlap": 0.25, "tta": tta}
    first_pass = predictor.predict_tiled(field, tile_size=64, overlap=0.25)
    decided = predictor.target_index(None, first_pass.tile_probabilities.mean(axis=0))
    ours = explain_tiled(predictor, field, method, **kwargs)
    given = explain_tiled(predictor, field, method, target_class=decided, **kwargs)
    assert (ours.target_class, ours.target_label) == (given.target_class, given.target_label)
    np.testing.assert_array_equal(ours.cam, given.cam)
    other = explain_tiled(predictor, field, method, target_class=1 - decided, **kwargs)
    assert not np.array_equal(ours.cam, other.cam)  # the class kept is the decided one's


def _two_pass(predictor: Predictor, method: str, index: int, options: dict):
    """The reference: classify the tiles as the predictor does, then the CAM runs them again
    (``iter_explain_tiled`` before it read the weights from the CAM's forward)."""
    from napari_pathreview.explain.cams import compute_cam

    def explain(rgbs):
        probs = predictor.probabilities(rgbs)[:, index]
        x = predictor.prepare(rgbs).detach().clone()
        return compute_cam(predictor.model, x, method, target_class=index, **options), probs

    return explain


@pytest.mark.parametrize(
    ("method", "predictor_tta", "options"),
    [("gradcam", "none", {}), ("gradcam", "flips", {"tta": "flips"}),
     ("gradcam", "flips", {"tta": "none"}), ("scorecam", "none", {"top_k": 2})],
    ids=["gradcam", "same-tta", "other-tta", "scorecam"],
)  # fmt: skip
def test_a_tiled_cam_is_the_two_pass_one(
    binary_ref, he_field, method: str, predictor_tta: str, options: dict
) -> None:
    """Same tile weights (the CAM's logits, or a classification under other views) and the
    same stitched map as classifying every tile first."""
    from functools import partial

    from napari_pathreview.inference.tiled_cams import tile_cams

    predictor = Predictor.from_registry(binary_ref, device="cpu", batch_size=8, tta=predictor_tta)
    rgbs = [he_field[:64, :64], he_field[64:128, 64:128], he_field[96:160, 160:224]]
    x = predictor.prepare(rgbs).detach().clone()
    classify = partial(predictor.probabilities, rgbs)
    maps, probs = tile_cams(predictor, x, method, 1, classify, options)
    ref_maps, ref_probs = _two_pass(predictor, method, 1, options)(rgbs)
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(maps, ref_maps, rtol=0, atol=1e-6)
    field = he_field[:112, :160]  # 2×3 tiles
    kwargs = {"target_class": 1, "tile_size": 64, "overlap": 0.25, **options}
    ours = explain_tiled(predictor, field, method, **kwargs)
    reference = _two_pass(predictor, method, 1, options)
    before = explain_tiled(predictor, field, method, explainer=reference, **kwargs)
    np.testing.assert_allclose(ours.cam, before.cam, rtol=0, atol=1e-6)
    assert ours.cam.max() > 0.0
