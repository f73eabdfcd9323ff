"""Test-time augmentation of a lesion run's held-out films (``eval.tta``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_pathreview.training.embeddings import PatchEncoder, encode_image, encode_to_zarr
from napari_pathreview.training.lesion_tta import ViewPredictions, merged_maps, predict_views
from napari_pathreview.training.mil import grid_to_image, predict_bags
from napari_pathreview.tta import get_views

PATCH, STRIDE = 16, 8
HEIGHT, WIDTH = 48, 64  # not square: quarter turns swap the film's sides


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A small patch MIL model, two non-square films and their identity-view store."""
    from napari_pathreview.models import create_model

    torch.manual_seed(0)
    model = create_model(
        "patch_mil", 2, encoder="test_resnet", patch_size=PATCH, stride=STRIDE, input_size=WIDTH
    ).eval()
    rng = np.random.default_rng(0)
    films = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(2)]
    encoder = PatchEncoder("m", model, model.head.dim, model.spec.mean, model.spec.std)
    path = tmp_path_factory.mktemp("tta") / "emb.zarr"
    cache = encode_to_zarr(encoder, films, ["a", "b"], path, PATCH, STRIDE)
    images = [SimpleNamespace(pixels=film) for film in films]
    return model, encoder, images, cache


@pytest.mark.parametrize(
    ("view", "turn"),
    [
        ("hflip", lambda p: p[:, ::-1]),
        ("vflip", lambda p: p[::-1]),
        ("rot90", lambda p: np.rot90(p, 1)),
        ("transpose", lambda p: np.rot90(p[:, ::-1], 1)),
    ],
)
def test_each_view_reads_the_film_as_numpy_turns_it(scored, view, turn):
    model, encoder, images, cache = scored
    views = {v.view.name: v for v in predict_views("d4", model, images, cache, [1])}
    emb, grid = encode_image(encoder, np.ascontiguousarray(turn(images[1].pixels)), PATCH, STRIDE)
    expected = predict_bags(model.head, [emb])
    assert views[view].grids[0] == tuple(grid)
    np.testing.assert_allclose(views[view].probs, expected.probs, rtol=1e-5, atol=1e-6)


def test_the_identity_view_is_read_from_the_folds_store(scored):
    model, _, images, cache = scored
    identity = predict_views("flips", model, images, cache, [0, 1])[0]
    assert identity.view.name == "identity"
    np.testing.assert_allclose(identity.probs, predict_bags(model.head, cache.bags).probs)


def test_no_tta_is_the_store_alone_and_no_film_is_encoded_again(scored):
    model, _, images, cache = scored
    views = predict_views("none", model, images, cache, [0, 1])
    assert [v.view.name for v in views] == ["identity"]


def test_maps_painted_in_turned_views_come_back_in_the_films_frame():
    # a film-frame map, handed to merged_maps as each view would see it: every view turned
    # back must paint the same map, so their mean is it exactly
    gh, gw = (HEIGHT - PATCH) // STRIDE + 1, (WIDTH - PATCH) // STRIDE + 1
    lesion = np.random.default_rng(1).random((gh, gw))
    views = []
    for view in get_views("d4"):
        seen = view.apply(torch.from_numpy(lesion)).numpy()
        flat = seen.reshape(-1)
        views.append(
            ViewPredictions(
                view,
                np.zeros((1, 2)),
                (np.stack([1 - flat, flat], axis=1),),
                (flat,),
                (seen.shape,),
            )
        )
    maps = merged_maps(views, 0, (HEIGHT, WIDTH), PATCH, STRIDE, negative=0)
    expected = grid_to_image(lesion.reshape(-1), (gh, gw), (HEIGHT, WIDTH), PATCH, STRIDE)
    assert maps["patch_map"].shape == (HEIGHT, WIDTH)
    np.testing.assert_allclose(maps["patch_map"], expected, atol=1e-12)
    np.testing.assert_allclose(maps["attention_map"], expected, atol=1e-12)
