"""Small helpers shared by the PathReview widgets (layer kinds, compact pickers, ETA).

Qt widgets are only touched inside functions, so importing this stays cheap.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any

from napari_pathreview.inference.analysis import analyse
from napari_pathreview.modality import HISTOLOGY, MAMMOGRAM, MODALITIES
from napari_pathreview.widgets import _results
from napari_pathreview.widgets._layer_meta import plugin_meta

logger = logging.getLogger(__name__)

#: ETA is shown once this fraction of a run is done (earlier guesses swing wildly).
ETA_AFTER = 0.1


#: Each colour layer's modality as judged from its pixels, dropped when its data is replaced
#: (``events.data``); keyed weakly, so a removed layer takes its entry with it.
_JUDGED: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def layer_modality(layer: Any) -> str:
    """The layer's modality from the plugin reader's metadata; for a layer another reader
    made, the plugin reader's own rule (``io.images.modality_of``): RGB is histology unless its
    channels are equal (a mammogram saved as colour), anything else a mammogram.

    The pixel check reads up to ``GREY_SAMPLE_PIXELS`` pixels (a lazy slide level from disk),
    and every refresh of the model and film pickers asks for each layer, so its answer is kept
    per layer until the layer's data changes.
    """
    modality = plugin_meta(layer).get("modality")
    if modality in MODALITIES:
        return modality
    if not getattr(layer, "rgb", False):
        return MAMMOGRAM
    layer = getattr(layer, "__wrapped__", layer)  # napari's proxy: one entry per real layer
    if layer not in _JUDGED:
        _JUDGED[layer] = _judge_colour(layer)
        layer.events.data.connect(_forget_judged)  # napari connects a function once
    return _JUDGED[layer]


def _judge_colour(layer: Any) -> str:
    from napari_pathreview.io.images import grey_in_colour

    pixels = layer.data[-1] if getattr(layer, "multiscale", False) else layer.data
    return MAMMOGRAM if grey_in_colour(pixels) else HISTOLOGY


def _forget_judged(event: Any) -> None:
    _JUDGED.pop(event.source, None)


def is_source_image(layer: Any) -> bool:
    """An image the user opened (not a CAM, heat map or stain view the plugin added)."""
    meta = plugin_meta(layer)
    return _results.is_image(layer) and meta.get("kind") is None


def analysis_roi_names(layers: Any, image: Any) -> list[str]:
    """The ROI layers the Analyze dock offers for ``image``: its own, plus those tied to no
    image (drawn by hand, or a GeoJSON such as QuPath's ``annotations.geojson`` opened beside
    it) that belong to no other open image (one named for another image, say "SOB_… -
    Shapes", would otherwise be kept as the ROI of the next film and scored against it)."""
    from napari_pathreview.widgets._review_state import belongs_to, roi_owner

    others = [
        layer
        for layer in layers
        if is_source_image(layer) and (image is None or layer.name != image.name)
    ]
    return [
        layer.name
        for layer in layers
        if _results.is_roi_layer(layer)
        and (
            belongs_to(layer, image)
            or (roi_owner(layer) is None and not any(belongs_to(layer, other) for other in others))
        )
    ]


def guard_triton_import() -> None:
    """Keep torch from importing triton inside a running napari.

    triton's bundled LLVM clashes with the one Mesa loaded for napari's OpenGL canvas:
    importing it after the canvas exists crashes the process (seen under Xvfb/llvmpipe).
    Inference does not need triton (it only serves ``torch.compile`` on GPUs), so when it
    is not loaded yet we mark it absent and torch falls back to its triton-free paths.
    """
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]
        logger.debug("triton marked unavailable inside napari (OpenGL/LLVM clash)")


def compact(*widgets: Any) -> None:
    """Let long model names and card summaries shrink and wrap instead of widening the dock."""
    from qtpy.QtWidgets import QComboBox
    from qtpy.QtWidgets import QLabel as _QLabel

    for widget in widgets:
        native = getattr(widget, "native", widget)
        if isinstance(native, QComboBox):
            native.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            native.setMinimumContentsLength(14)
        elif isinstance(native, _QLabel):
            native.setWordWrap(True)


def eta_text(fraction: float, elapsed: float) -> str:
    """'~12 s left' from the fraction done and the seconds spent ('' until it means something)."""
    if fraction < ETA_AFTER or fraction >= 1.0 or elapsed <= 0:
        return ""
    left = elapsed * (1.0 - fraction) / fraction
    return f"~{left:.0f} s left" if left < 120 else f"~{left / 60:.0f} min left"


class _Failed:
    """What the worker yields instead of raising, so napari never shows a traceback dialog."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def failure_returned(function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` in a worker, an error returned as :class:`_Failed`.

    napari's ``create_worker`` re-raises a worker's error in the main thread, so a notice
    from ``errored`` came with a traceback on top; the widget notifies a returned failure.
    """
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - notified by the widget, in the main thread
        return _Failed(error)


def _guarded(*args: Any, **kwargs: Any):
    """Run :func:`analyse`, turning any exception into a yielded :class:`_Failed`."""
    try:
        yield from analyse(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - reported by the widget, in the main thread
        yield _Failed(error)


def fit_height(*widgets: Any, width: int = 250) -> None:
    """Keep word-wrapped labels and tables at their full height inside a scroll area.

    A scroll area squeezes its content to the smallest height every child allows before it
    scrolls, and a wrapped label's smallest height is one line: the text got clipped.
    """
    from qtpy.QtWidgets import QLabel, QTableWidget

    for widget in widgets:
        native = getattr(widget, "native", widget)
        if isinstance(native, QLabel):
            text_width = native.width() if native.isVisible() and native.width() > 50 else width
            height = native.heightForWidth(text_width) if native.text() else 0
            native.setMinimumHeight(max(height, 0))
        elif isinstance(native, QTableWidget):
            rows = native.rowCount()
            header = native.horizontalHeader().height() if rows else 0
            body = sum(native.rowHeight(r) for r in range(rows))
            native.setMinimumHeight(min(native.maximumHeight(), header + body + 4))


def he_settings_apply(card: Any) -> bool:
    """Whether stain normalisation and the advanced slide settings apply (and are shown):
    H&E matters, so not for a mammogram model; a value left in them then refuses nothing."""
    return card is None or card.modality != "mammogram"
