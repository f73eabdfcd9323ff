"""Normalisers run the right algorithm: target statistics, known stains, identity, paths agree."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import torch
from stain_testutils import RUIFROK_HE, read_rgb, synthesize_he

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.stain import (
    NORMALIZERS,
    REINHARD_BREAKHIS_PRESET,
    IdentityNormalizer,
    MacenkoNormalizer,
    NotFittedError,
    ReinhardNormalizer,
    VahadaneNormalizer,
    get_normalizer,
    normalizer_from_dict,
)

METHODS = ("reinhard", "macenko", "vahadane")
DECONV = ("macenko", "vahadane")
#: numpy vs torch: mean absolute difference and 99th percentile, in 8-bit levels
PATH_MEAN_TOL, PATH_P99_TOL = 1.0, 4.0


def to_batch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def from_batch(batch: torch.Tensor) -> np.ndarray:
    return batch.permute(0, 2, 3, 1).cpu().numpy()


def test_table_names_every_method():
    assert set(NORMALIZERS) == {"none", "reinhard", "macenko", "vahadane"}
    assert isinstance(get_normalizer("MACENKO"), MacenkoNormalizer)
    assert isinstance(get_normalizer("none"), IdentityNormalizer)


def test_unknown_method_raises():
    with pytest.raises(InvalidInputError, match="unknown stain method"):
        get_normalizer("spams")


def test_transform_before_fit_raises(ruifrok_image):
    with pytest.raises(NotFittedError):
        MacenkoNormalizer().transform(ruifrok_image)


def test_reinhard_output_has_target_lab_statistics(breakhis_images):
    normalizer = normalizer_from_dict(REINHARD_BREAKHIS_PRESET)
    out = normalizer.transform(breakhis_images[0])
    lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(lab.mean(0), REINHARD_BREAKHIS_PRESET["means"], atol=1.5)
    np.testing.assert_allclose(lab.std(0), REINHARD_BREAKHIS_PRESET["stds"], atol=1.5)


def test_reinhard_matches_plain_opencv_reference(breakhis_images, he_target):
    normalizer = ReinhardNormalizer().fit(he_target)
    src = breakhis_images[3]
    lab = cv2.cvtColor(src, cv2.COLOR_RGB2LAB).astype(np.float32)
    mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
    ref = (lab - mean) / std * normalizer.stds + normalizer.means
    ref = cv2.cvtColor(np.clip(np.rint(ref), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    diff = np.abs(normalizer.transform(src).astype(int) - ref)
    assert diff.mean() < 0.5 and diff.max() <= 3


def test_reinhard_streamed_fit_equals_global_statistics(breakhis_images):
    images = breakhis_images[:3]
    streamed = ReinhardNormalizer().fit(img for img in images)
    lab = np.concatenate(
        [cv2.cvtColor(i, cv2.COLOR_RGB2LAB).reshape(-1, 3) for i in images]
    ).astype(float)
    np.testing.assert_allclose(streamed.means, lab.mean(0), atol=1e-6)
    np.testing.assert_allclose(streamed.stds, lab.std(0), atol=1e-6)


@pytest.mark.parametrize("method", DECONV)
def test_recovers_ruifrok_stain_matrix(method, ruifrok_image):
    normalizer = get_normalizer(method).fit(ruifrok_image)
    cosines = (normalizer.stain_matrix * RUIFROK_HE).sum(axis=1)
    assert cosines.min() >= 0.99, cosines
    np.testing.assert_allclose(np.linalg.norm(normalizer.stain_matrix, axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("method", DECONV)
def test_torch_path_recovers_ruifrok_stain_matrix(method, ruifrok_image):
    from napari_pathreview.stain._deconvolution import torch_od

    normalizer = get_normalizer(method)
    batch = to_batch(np.stack([ruifrok_image, synthesize_he(seed=1)])).float()
    od = torch_od(batch).flatten(2)
    matrix, _ = normalizer._estimate_torch(od, (od >= 0.15).all(1))
    cosines = (matrix.double().numpy() * RUIFROK_HE[None]).sum(axis=-1)
    assert cosines.min() >= 0.99, cosines


@pytest.mark.parametrize("method", DECONV)
def test_stain_order_is_haematoxylin_first(method, ruifrok_image):
    swapped = synthesize_he(matrix=RUIFROK_HE[::-1])
    for image in (ruifrok_image, swapped):
        cosines = get_normalizer(method).fit(image).stain_matrix @ RUIFROK_HE.T
        assert cosines[0, 0] >= 0.99 and cosines[1, 1] >= 0.99, cosines


@pytest.mark.parametrize("method", METHODS)
def test_fit_to_self_then_transform_is_near_identity(method, ruifrok_image, breakhis_images):
    image = ruifrok_image if method != "reinhard" else breakhis_images[0]
    out = get_normalizer(method).fit(image).transform(image)
    assert np.abs(out.astype(int) - image).mean() < 1.5


@pytest.mark.parametrize("method", METHODS)
def test_numpy_and_torch_paths_agree(method, he_target, breakhis_tiles):
    normalizer = get_normalizer(method).fit(he_target)
    by_numpy = np.stack([normalizer.transform(tile) for tile in breakhis_tiles])
    by_torch = from_batch(normalizer.transform(to_batch(breakhis_tiles)))
    assert normalizer.last_flags == [None] * len(breakhis_tiles)
    diff = np.abs(by_numpy.astype(int) - by_torch.astype(int))
    assert diff.mean() <= PATH_MEAN_TOL and np.percentile(diff, 99) <= PATH_P99_TOL


@pytest.mark.parametrize("method", METHODS)
def test_float_tensor_comes_back_float_on_same_device(method, he_target, breakhis_tiles):
    normalizer = get_normalizer(method).fit(he_target)
    as_uint8 = normalizer.transform(to_batch(breakhis_tiles[:2]))
    as_float = normalizer.transform(to_batch(breakhis_tiles[:2]).to(torch.float64) / 255.0)
    assert as_float.dtype == torch.float64 and as_float.device == torch.device("cpu")
    assert float(as_float.min()) >= 0.0 and float(as_float.max()) <= 1.0
    assert (as_float * 255 - as_uint8.double()).abs().max() <= 1.0


@pytest.mark.parametrize("method", METHODS)
def test_single_chw_tensor_keeps_its_shape(method, he_target, breakhis_tiles):
    normalizer = get_normalizer(method).fit(he_target)
    tile = to_batch(breakhis_tiles[:1])[0]
    assert normalizer.transform(tile).shape == tile.shape


@pytest.mark.parametrize("method", [*METHODS, "none"])
def test_state_round_trips_through_json(method, he_target, breakhis_tiles):
    normalizer = get_normalizer(method).fit(he_target)
    restored = normalizer_from_dict(json.loads(json.dumps(normalizer.to_dict())))
    assert restored.to_dict() == normalizer.to_dict()
    assert restored.to_dict()["method"] == method
    np.testing.assert_array_equal(
        restored.transform(breakhis_tiles[0]), normalizer.transform(breakhis_tiles[0])
    )


def test_malformed_state_raises_invalid_input():
    with pytest.raises(InvalidInputError):
        normalizer_from_dict(
            {
                "method": "macenko",
                "stain_matrix": [[1, 0, 0], [1, 0, 0]],
                "max_concentrations": [1, 1],
            }
        )
    with pytest.raises(InvalidInputError):
        normalizer_from_dict({"method": "reinhard", "means": [1, 2, 3]})
    with pytest.raises(InvalidInputError):
        normalizer_from_dict({"stain_matrix": []})


def test_target_missing_a_field_names_the_field():
    torchstain_like = {"method": "macenko", "HERef": [[0.5, 0.7], [0.6, 0.6], [0.4, 0.3]]}
    with pytest.raises(InvalidInputError, match=r"missing 'stain_matrix' \(it has 'HERef'\)"):
        normalizer_from_dict(torchstain_like)


@pytest.mark.parametrize(
    "state",
    [
        {"color_space": "cielab", "means": [180.8, 148.6, 116.5], "stds": [35.4, 17.5, 11.1]},
        {"means": [65.0, 20.0, -15.0], "stds": [15.0, 8.0, 6.0]},  # scikit-image CIELAB
    ],
    ids=["named-cielab", "cielab-values"],
)
def test_reinhard_target_in_another_lab_convention_is_refused(state):
    with pytest.raises(InvalidInputError, match="opencv_lab8"):
        normalizer_from_dict({"method": "reinhard", **state})


@pytest.mark.parametrize("method", DECONV)
def test_streamed_fit_takes_median_of_images(method, ruifrok_image):
    other = synthesize_he(seed=5, matrix=np.array([[0.55, 0.76, 0.35], [0.15, 0.95, 0.27]]))
    fitted = get_normalizer(method).fit(iter([ruifrok_image, synthesize_he(seed=2), other]))
    cosines = (fitted.stain_matrix * RUIFROK_HE).sum(axis=1)
    assert cosines.min() >= 0.99


def test_identity_returns_input_unchanged(breakhis_tiles):
    batch = to_batch(breakhis_tiles)
    assert torch.equal(get_normalizer("none").transform(batch), batch)


@pytest.mark.parametrize("method", METHODS)
def test_real_images_normalise_without_warnings(
    method, he_target, breakhis_images, shared_data, caplog
):
    normalizer = get_normalizer(method).fit(he_target)
    others = [read_rgb(p)[..., :3] for p in sorted((shared_data / "he_reference").glob("*.png"))]
    with caplog.at_level(logging.WARNING):
        for image in [*breakhis_images, *others]:
            out = normalizer.transform(image)
            assert out.dtype == np.uint8 and out.shape == image.shape
            assert normalizer.last_flags == [None]
        tiles = np.stack([img[:224, -224:] for img in breakhis_images[::4]])
        batch = normalizer.transform(to_batch(tiles))
        assert normalizer.last_flags == [None] * len(tiles)
    assert batch.dtype == torch.uint8
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_vahadane_concentrations_are_non_negative(ruifrok_image):
    from napari_pathreview.stain.vahadane import vahadane_concentrations

    normalizer = VahadaneNormalizer().fit(ruifrok_image)
    od = -np.log((ruifrok_image.reshape(-1, 3) + 1.0) / 256.0)
    assert vahadane_concentrations(od, normalizer.stain_matrix).min() >= 0.0
