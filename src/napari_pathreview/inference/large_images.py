"""Which images are classified tile by tile, and how, for the Analyze dock and ``predict`` alike.

One rule (:func:`needs_tiling`) decides; one pair of generators classifies a large image with
the slide engine (:func:`iter_classify_tiles`) and explains it on the heatmap's own plan
(:func:`iter_explain_tiles`). ``analysis.analyse`` (the dock) and ``pathreview predict`` both
call these, so the same large file gives the same probabilities and CAM through either.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

__all__ = [
    "TILE_ABOVE_PIXELS",
    "iter_classify_tiles",
    "iter_explain_tiles",
    "needs_tiling",
    "run_to_end",
]

#: Histology images whose longer side exceeds this many pixels are classified tile by tile.
TILE_ABOVE_PIXELS = 1600


def needs_tiling(levels: Sequence[Any], modality: str | None, tiled: bool | None = None) -> bool:
    """Tile multiscale images and large histology; whole mammograms are classified whole.

    Args:
        levels: The image's pyramid levels, level 0 first (one for a plain image).
        modality: "histology" or "mammogram" (the layer's or the file's).
        tiled: Force tiling on or off; None decides from the levels and the size.
    """
    if tiled is not None:
        return tiled
    if modality == "mammogram":
        return False
    shape = levels[0].shape
    return len(levels) > 1 or max(shape[0], shape[1]) > TILE_ABOVE_PIXELS


def iter_classify_tiles(
    predictor: Any,
    source: Any,
    settings: Any,
    cancel: threading.Event | None = None,
    cache: Any = None,
    path: str | None = None,
) -> Generator[Any, None, tuple[Any, Any]]:
    """Run the slide engine over ``source``, relaying its events; returns (prediction, result).

    With ``predictor.qc`` on, the prediction's ``qc`` is the slide's verdict from its tissue
    tiles (``slide_qc.slide_quality``: blur, pen and exposure per tile, the slide flagged above
    ``settings.qc_max_flagged``), which ``predict`` and the Analyze dock both report.

    Args:
        predictor: An ``inference.Predictor`` (its stain, TTA and batch size apply per tile).
        source: A ``SlideSource`` (``layer_slide.as_slide``).
        settings: ``slide_grid.SlideSettings`` (the mode: matched or preview).
        cancel: Event that stops the run (a ``Progress(cancelled=True)`` is relayed).
        cache: A ``cache.SlideCache`` to serve and keep the result, or None.
        path: What the prediction names as its source.
    """
    from napari_pathreview.inference.cache import cached_slide
    from napari_pathreview.inference.slide_qc import slide_quality
    from napari_pathreview.inference.slides import SlideResult, slide_prediction

    result = None
    for item in cached_slide(predictor, source, settings, cache, cancel):
        if isinstance(item, SlideResult):
            result = item
        else:
            yield item
    if result is None:  # cancelled: the caller saw the cancelled Progress
        return None, None
    prediction = slide_prediction(predictor, result, path)
    if predictor.qc:
        prediction = replace(prediction, qc=slide_quality(result, settings.qc_max_flagged))
    return prediction, result


def iter_explain_tiles(
    predictor: Any,
    source: Any,
    tiled: Any,
    settings: Any,
    method: str,
    label: str,
    cancel: threading.Event | None = None,
    cache: Any = None,
    cam_options: dict[str, Any] | None = None,
) -> Generator[Any, None, Any]:
    """The CAM of a tiled image on the heatmap's plan, a CAM map a few pixels per heatmap cell
    (``slide_cam``); a patch MIL model's own map for ``patch_map`` / ``attention_map``.

    Args:
        tiled: The ``SlideResult`` of :func:`iter_classify_tiles`.
        label: The class to explain (the target class, else the predicted one).
        cache: A ``cache.SlideCache`` to serve and keep the CAM beside the slide's result.
        cam_options: CAM test-time augmentation (``tta``) and Score-CAM's ``batch_size`` /
            ``top_k``, applied to every tile (``slide_cam.iter_slide_cam``).

    Yields the CAM's ``Progress``; returns the CAM (``TiledCam`` or ``CamResult``), None when
    cancelled.
    """
    from napari_pathreview.inference.cache import cached_slide_cam
    from napari_pathreview.inference.mil_maps import MAP_KINDS
    from napari_pathreview.inference.tiling import TiledCam

    if method in MAP_KINDS:
        return _slide_mil_map(predictor, tiled, method, label)
    index = list(predictor.classes).index(label)
    cam = None
    steps = cached_slide_cam(
        predictor, source, tiled.grid, settings, index, method, cache, cancel, cam_options
    )
    for item in steps:
        if isinstance(item, TiledCam):
            cam = item
        else:
            yield item
    return cam


def run_to_end(steps: Generator[Any, None, Any]) -> Any:
    """Drain a generator that has no one to report progress to; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def _slide_mil_map(predictor: Any, tiled: Any, kind: str, label: str) -> Any:
    from napari_pathreview.explain.cams import CamResult
    from napari_pathreview.inference.mil_maps import negative_class_index
    from napari_pathreview.inference.slide_mil import slide_map

    grid = slide_map(tiled, kind, negative_class_index(predictor.card))
    return CamResult(grid, kind, list(predictor.classes).index(label), label)
