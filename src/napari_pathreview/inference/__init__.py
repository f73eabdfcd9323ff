"""Predictions from registered models: batching, devices, precision, tiling of large images.

Names resolve lazily (PEP 562) so ``import napari_pathreview.inference.cli`` stays torch-free.
"""

from __future__ import annotations

from napari_pathreview._lazy import lazy_attributes

_EXPORTS: dict[str, str] = {
    "Predictor": "napari_pathreview.inference.predictor",
    "Prediction": "napari_pathreview.inference.predictor",
    "Progress": "napari_pathreview.inference.predictor",
    "TiledPrediction": "napari_pathreview.inference.tiling",
    "TiledCam": "napari_pathreview.inference.tiling",
    "predict_tiled": "napari_pathreview.inference.tiling",
    "explain_tiled": "napari_pathreview.inference.tiled_cams",
    "iter_predict_tiled": "napari_pathreview.inference.tiling",
    "iter_explain_tiled": "napari_pathreview.inference.tiled_cams",
    "SlideSettings": "napari_pathreview.inference.slides",
    "iter_slide": "napari_pathreview.inference.slides",
    "predict_slide": "napari_pathreview.inference.slides",
    "as_slide": "napari_pathreview.inference.layer_slide",
    "CohortJob": "napari_pathreview.inference.cohort",
    "job_from_settings": "napari_pathreview.inference.cohort",
    "run_cohort": "napari_pathreview.inference.cohort",
    "resolve_device": "napari_pathreview.inference.device",
    "DeviceUnavailableError": "napari_pathreview.inference.device",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, __all__)
