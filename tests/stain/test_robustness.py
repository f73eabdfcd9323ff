"""Blank, flat, tiny and odd-typed inputs give a defined result: never NaN, never a crash mid-batch.

Cases counted here: 7 degenerate tiles × 3 methods × 2 paths (numpy, torch) = 42; 4 unsupported
numpy inputs × 4 methods = 16; 5 impossible shapes; 6 mixed batches (3 methods × uint8 batch
with blank tiles, float batch with a NaN tile and an out-of-range tile); 2 odd tensor layouts;
4 blank-fit cases; 9 fits on tensors outside the uint8 or [0, 1] contract: 84 in all.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from stain_testutils import synthesize_he

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.stain import StainFitError, get_normalizer

METHODS = ("reinhard", "macenko", "vahadane")


def _noise_white(shape=(64, 64)):
    rng = np.random.default_rng(3)
    return rng.integers(236, 256, (*shape, 3), dtype=np.uint8)


DEGENERATE = {
    "white": lambda: np.full((64, 64, 3), 255, np.uint8),
    "black": lambda: np.zeros((64, 64, 3), np.uint8),
    "near_white_noise": _noise_white,
    "flat_pink": lambda: np.broadcast_to(np.array([230, 150, 200], np.uint8), (64, 64, 3)).copy(),
    "single_colour_purple": lambda: np.broadcast_to(
        np.array([90, 60, 140], np.uint8), (64, 64, 3)
    ).copy(),
    "tiny_1x1": lambda: np.array([[[120, 60, 150]]], np.uint8),
    "tiny_3x3": lambda: np.random.default_rng(1).integers(40, 200, (3, 3, 3), dtype=np.uint8),
}


@pytest.fixture(scope="module")
def fitted():
    image = synthesize_he(size=(128, 128))
    return {m: get_normalizer(m).fit(image) for m in METHODS}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_numpy_tile_is_returned_unchanged_and_flagged(method, case, fitted):
    tile = DEGENERATE[case]()
    out = fitted[method].transform(tile)
    np.testing.assert_array_equal(out, tile)
    assert fitted[method].last_flags[0] in {"no_tissue", "low_contrast", "degenerate_stains"}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_torch_tile_is_returned_unchanged_and_flagged(method, case, fitted):
    tile = torch.from_numpy(DEGENERATE[case]()).permute(2, 0, 1)[None].contiguous()
    out = fitted[method].transform(tile.float() / 255)
    assert torch.isfinite(out).all()
    assert torch.equal(out, tile.float() / 255)
    assert fitted[method].last_flags[0] is not None


@pytest.mark.parametrize("method", METHODS)
def test_blank_tiles_in_a_batch_pass_through_while_others_are_normalised(method, fitted):
    tissue = synthesize_he(
        seed=9, size=(64, 64), matrix=np.array([[0.5, 0.8, 0.33], [0.2, 0.95, 0.25]])
    )
    tiles = [DEGENERATE[c]() for c in ("white", "black", "near_white_noise", "flat_pink")]
    batch = torch.from_numpy(np.stack([tissue, *tiles, tissue])).permute(0, 3, 1, 2).contiguous()
    out = fitted[method].transform(batch)
    flags = fitted[method].last_flags
    assert flags[0] is None and flags[-1] is None
    assert all(f is not None for f in flags[1:-1])
    assert torch.equal(out[1:-1], batch[1:-1])
    assert not torch.equal(out[0], batch[0])


@pytest.mark.parametrize("method", METHODS)
def test_nan_tile_in_float_batch_is_flagged_and_others_normalised(method, fitted):
    tissue = torch.from_numpy(synthesize_he(seed=4, size=(64, 64))).permute(2, 0, 1).float() / 255
    bad = tissue.clone()
    bad[0, 0, 0] = float("nan")
    over = tissue * 3.0
    out = fitted[method].transform(torch.stack([tissue, bad, over]))
    assert fitted[method].last_flags == [None, "float_out_of_range", "float_out_of_range"]
    assert torch.isfinite(out[0]).all() and torch.equal(out[2], over)


@pytest.mark.parametrize(
    "image, flag",
    [
        (np.full((32, 32), 128, np.uint8), "grayscale"),
        (np.full((32, 32, 4), 128, np.uint8), "rgba"),
        (np.full((32, 32, 3), 30000, np.uint16), "dtype_uint16"),
        (np.full((32, 32, 3), 0.5, np.float32), "dtype_float32"),
    ],
    ids=["grayscale", "rgba", "uint16", "float"],
)
@pytest.mark.parametrize("method", [*METHODS, "none"])
def test_unsupported_numpy_input_is_returned_unchanged_with_warning(
    method, image, flag, fitted, caplog
):
    normalizer = fitted.get(method) or get_normalizer("none")
    with caplog.at_level(logging.WARNING):
        out = normalizer.transform(image)
    assert out is image
    assert normalizer.last_flags == [flag]
    assert any(flag in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((2, 4, 4, 3), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros(7),
        "x",
    ],
    ids=["5_channels", "4d", "empty", "1d", "string"],
)
def test_impossible_shapes_raise_invalid_input(image, fitted):
    with pytest.raises(InvalidInputError):
        fitted["macenko"].transform(image)


def test_tensor_with_four_channels_is_returned_and_flagged(fitted):
    batch = torch.zeros(2, 4, 8, 8)
    assert fitted["reinhard"].transform(batch) is batch
    assert fitted["reinhard"].last_flags == ["channels_4", "channels_4"]


def test_integer_tensor_of_other_dtype_is_returned_and_flagged(fitted):
    batch = torch.zeros(1, 3, 8, 8, dtype=torch.int32)
    assert fitted["vahadane"].transform(batch) is batch
    assert fitted["vahadane"].last_flags == ["dtype_int32"]


@pytest.mark.parametrize("method", METHODS)
def test_fit_on_blank_image_raises_clear_error(method):
    with pytest.raises(StainFitError, match="no tissue"):
        get_normalizer(method).fit(np.full((64, 64, 3), 255, np.uint8))


def test_fit_on_only_blank_images_raises():
    blanks = [DEGENERATE["white"](), DEGENERATE["flat_pink"]()]
    with pytest.raises(StainFitError):
        get_normalizer("macenko").fit(iter(blanks))


@pytest.mark.parametrize("method", METHODS)
def test_fit_refuses_a_float_tensor_holding_0_to_255(method):
    pixels = torch.from_numpy(synthesize_he(size=(64, 64))).permute(2, 0, 1)[None].float()
    with pytest.raises(InvalidInputError, match=r"\[0, 1\], got 5 to 255"):
        get_normalizer(method).fit(pixels)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int16])
def test_fit_refuses_an_integer_tensor_other_than_uint8(method, dtype):
    pixels = torch.from_numpy(synthesize_he(size=(64, 64))).permute(2, 0, 1)[None].to(dtype)
    with pytest.raises(InvalidInputError, match=str(dtype)):
        get_normalizer(method).fit(pixels)
