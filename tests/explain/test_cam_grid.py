"""The CAM grid rule: a model's CAM layer size at an input size, read on the meta device."""

from __future__ import annotations

import pytest
import torch

from napari_pathreview.explain.cam_grid import (
    cam_grid,
    cam_grid_note,
    can_localise,
    smallest_localising_size,
)
from napari_pathreview.models import create_model


def _meta(architecture: str) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(architecture, 2)


@pytest.mark.parametrize(("size", "grid"), [(32, (1, 1)), (64, (2, 2)), (224, (7, 7))])
def test_resnet18_cam_layer_has_stride_32(size, grid) -> None:
    assert cam_grid(_meta("resnet18"), size) == grid


def test_a_vit_cam_grid_is_its_patch_grid_not_its_token_count() -> None:
    assert cam_grid(_meta("vit_tiny_patch16_224"), 224) == (14, 14)


def test_a_one_cell_side_cannot_localise_and_two_cells_can() -> None:
    assert not can_localise((1, 1)) and not can_localise((1, 4))
    assert can_localise((2, 2))


def test_the_smallest_localising_size_is_the_first_with_two_cells() -> None:
    model = _meta("resnet18")
    smallest = smallest_localising_size(model, 32, 8192)
    assert cam_grid(model, smallest) == (2, 2) and cam_grid(model, smallest - 1) == (1, 1)


def test_reading_the_grid_leaves_a_training_model_training() -> None:
    model = _meta("resnet18").train()
    cam_grid(model, 32)
    assert model.training


def test_the_note_names_the_grid_the_size_and_what_to_use_instead() -> None:
    note = cam_grid_note((1, 1), 32)
    assert "CAM layer is 1×1 at 32 px: CAMs cannot localise" in note and "patch maps" in note
