"""Turn analysis results into napari layers aligned with the image they explain.

Alignment rule: a result computed on an array of shape (h, w) that covers an image whose
level 0 is (H, W) gets ``scale = image.scale * (H/h, W/w)`` and a translate shifted by half
a coarse pixel, so pixel centres line up in world coordinates whatever the pyramid level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError

CAM_COLORMAP = "inferno"
HEATMAP_COLORMAP = "turbo"


def level0_shape(layer: Any) -> tuple[int, int]:
    """(rows, cols) of an image layer's full-resolution level, RGB or not, multiscale or not."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(s) for s in data.shape)
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    if len(shape) != 2:
        raise InvalidInputError(
            f"layer {layer.name!r} has shape {tuple(data.shape)}: the Analyze widget classifies "
            "one 2-D image (RGB or grayscale); split stacks or channels into separate layers."
        )
    return shape[-2], shape[-1]


def layer_levels(layer: Any) -> list[Any]:
    """The image data as a list of pyramid levels (one for a plain image)."""
    if getattr(layer, "multiscale", False):
        return list(layer.data)
    return [layer.data]


def aligned_transform(layer: Any, data_shape: Sequence[int]) -> dict[str, tuple[float, float]]:
    """``scale``/``translate`` placing a (h, w) array over the image layer's full extent."""
    rows, cols = level0_shape(layer)
    base_scale = np.asarray(layer.scale[-2:], dtype=float)
    base_translate = np.asarray(layer.translate[-2:], dtype=float)
    factor = np.array([rows / data_shape[0], cols / data_shape[1]], dtype=float)
    scale = base_scale * factor
    translate = base_translate + (factor - 1.0) / 2.0 * base_scale
    return {"scale": tuple(scale.tolist()), "translate": tuple(translate.tolist())}


def _upsert_image(viewer: Any, name: str, data: np.ndarray, **kwargs: Any) -> Any:
    """Replace the data of the layer called ``name`` or add it; returns the layer."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        for key, value in kwargs.items():
            setattr(layer, key, value)
        return layer
    return viewer.add_image(data, name=name, **kwargs)


def cam_layer_name(image_layer: Any) -> str:
    return f"CAM · {image_layer.name}"


def heatmap_layer_name(image_layer: Any) -> str:
    return f"tile probability · {image_layer.name}"


def add_cam_layer(viewer: Any, image_layer: Any, cam: np.ndarray, method: str = "cam") -> Any:
    """Show a CAM (H×W in [0, 1]) over its image: inferno, half opaque, additive blending."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise InvalidInputError(f"a CAM must be 2-D, got shape {cam.shape}")
    layer = _upsert_image(
        viewer,
        cam_layer_name(image_layer),
        cam,
        colormap=CAM_COLORMAP,
        opacity=0.5,
        blending="additive",
        contrast_limits=(0.0, 1.0),
        **aligned_transform(image_layer, cam.shape),
    )
    layer.metadata["pathreview"] = {"kind": "cam", "method": method, "image": image_layer.name}
    return layer


def add_tile_heatmap(viewer: Any, image_layer: Any, tiled: Any, classes: Sequence[str]) -> Any:
    """Show the tile probability of the positive class (the last) over a large image."""
    maps = np.asarray(tiled.prob_maps, dtype=np.float32)
    if maps.ndim != 3:
        raise InvalidInputError(f"tile probability maps must be C×h×w, got {maps.shape}")
    positive = maps[-1]
    base_scale = np.asarray(image_layer.scale[-2:], dtype=float)
    base_translate = np.asarray(image_layer.translate[-2:], dtype=float)
    layer = _upsert_image(
        viewer,
        heatmap_layer_name(image_layer),
        positive,
        colormap=HEATMAP_COLORMAP,
        opacity=0.4,
        blending="additive",
        contrast_limits=(0.0, 1.0),
        # the tiler gives cell size and cell (0, 0)'s centre in level-0 pixels
        scale=tuple((base_scale * np.asarray(tiled.scale, dtype=float)).tolist()),
        translate=tuple(
            (base_translate + np.asarray(tiled.translate, dtype=float) * base_scale).tolist()
        ),
    )
    layer.metadata["pathreview"] = {"kind": "tile_probability", "class": list(classes)[-1]}
    return layer


def _world_to_image(points: np.ndarray, roi_layer: Any, image_layer: Any) -> np.ndarray:
    """Shape vertices from the ROI layer's data coordinates to the image's pixel grid."""
    roi_scale = np.asarray(roi_layer.scale[-2:], dtype=float)
    roi_translate = np.asarray(roi_layer.translate[-2:], dtype=float)
    img_scale = np.asarray(image_layer.scale[-2:], dtype=float)
    img_translate = np.asarray(image_layer.translate[-2:], dtype=float)
    world = points[:, -2:] * roi_scale + roi_translate
    return (world - img_translate) / img_scale


def roi_mask(roi_layer: Any, image_layer: Any) -> np.ndarray:
    """A boolean mask of the ROI on the image's level-0 grid, from a Shapes or Labels layer."""
    shape = level0_shape(image_layer)
    kind = type(roi_layer).__name__
    if kind == "Shapes":
        from napari_pathreview.explain import mask_from_shapes

        data = [
            _world_to_image(np.asarray(d, dtype=float), roi_layer, image_layer)
            for d in roi_layer.data
        ]
        if not data:
            return np.zeros(shape, dtype=bool)
        return np.asarray(mask_from_shapes(data, list(roi_layer.shape_type), shape), dtype=bool)
    if kind == "Labels":
        labels = np.asarray(roi_layer.data[0] if roi_layer.multiscale else roi_layer.data)
        mask = labels > 0
        if mask.shape != shape:
            from skimage.transform import resize

            mask = resize(mask, shape, order=0, preserve_range=True, anti_aliasing=False) > 0.5
        return mask
    raise InvalidInputError(
        f"layer {roi_layer.name!r} is a {kind}; choose a Shapes or Labels layer."
    )


def roi_scores(cam: np.ndarray, mask: np.ndarray, threshold: float) -> dict[str, float]:
    """IoU and Dice of the CAM binarised at ``threshold`` against the ROI mask (seed 004)."""
    from napari_pathreview.explain import roi_dice, roi_iou

    return {
        "iou": float(roi_iou(cam, mask, threshold=threshold)),
        "dice": float(roi_dice(cam, mask, threshold=threshold)),
    }
