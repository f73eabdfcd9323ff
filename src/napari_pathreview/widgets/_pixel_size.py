"""The Analyze widget's pixel-size field, for slides whose file does not state their µm/px.

Such a slide opens in pixels (the reader says so once) and matched-resolution tiling
refuses it: nothing is guessed. The scanner's µm per level-0 pixel, typed here, becomes the
layer's scale in µm and ``metadata["pathreview"]["um_per_px"]``, which is what the Analyze
widget passes to :func:`~napari_pathreview.inference.analysis.analyse` (and from there to
the slide engine's ``LevelsSlide``). ROIs, CAMs and heat maps over the image follow it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from magicgui.widgets import Container, FloatSpinBox, PushButton

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets import _scale
from napari_pathreview.widgets._common import is_source_image, layer_modality
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._notify import notify_exception, show_info
from napari_pathreview.widgets._review_state import belongs_to

logger = logging.getLogger(__name__)

FIELD_LABEL = "pixel size (µm/px)"
#: What the field shows while the size is not known (its value is then 0, its minimum).
UNKNOWN = "unknown"
USER = "user"  # metadata["pathreview"]["um_per_px_source"] of a size typed here


def needs_pixel_size(layer: Any) -> bool:
    """Whether the field applies: a histology image with no stated (or a user-given) size."""
    if layer is None or layer_modality(layer) != "histology":
        return False
    meta = plugin_meta(layer)
    return _scale.pixel_size_um(meta) is None or meta.get("um_per_px_source") == USER


def _rescaled(values: Any, factor: float) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    return (*values[:-2], values[-2] * factor, values[-1] * factor)


def set_pixel_size(viewer: Any, layer: Any, um_per_px: float) -> None:
    """Give ``layer`` (and the layers drawn over it) a level-0 pixel size in µm.

    Raises:
        InvalidInputError: a size that is not positive.
    """
    if not um_per_px > 0:
        raise InvalidInputError(
            f"{layer.name}: enter the scanner's µm per level-0 pixel (a positive number, "
            f"e.g. 0.25 at 40×); got {um_per_px}."
        )
    size = float(um_per_px)
    factor = size / float(layer.scale[-1])
    followers = [o for o in viewer.layers if not is_source_image(o) and belongs_to(o, layer)]
    meta = plugin_meta(layer)
    meta.update(um_per_px=size, um_per_px_source=USER)
    layer.metadata = {**layer.metadata, "pathreview": meta}
    layer.scale = _rescaled(layer.scale, factor)
    for other in followers:  # CAMs, heat maps and ROIs drawn over the image keep their place
        other.scale = _rescaled(other.scale, factor)
    for each in (layer, *followers):
        each.units = (*tuple(each.units)[:-2], "um", "um")
    _scale.show_scale_bar(viewer, layer)
    logger.info("%s: pixel size set to %.4g µm by the user", layer.name, size)


class PixelSizeBox:
    """A "pixel size (µm/px)" field and a Set button, enabled when the image needs them.

    Args:
        viewer: the viewer holding the image.
        current_layer: returns the image layer the Analyze widget has chosen (or None).
    """

    def __init__(self, viewer: Any, current_layer: Callable[[], Any]) -> None:
        self.viewer = viewer
        self.current_layer = current_layer
        self.field = FloatSpinBox(label=FIELD_LABEL, min=0.0, max=100_000.0, step=0.01, value=0)
        self.field.native.setDecimals(4)
        # at its minimum (0) the field reads "unknown": "0.0000" read like a measured size
        self.field.native.setSpecialValueText(UNKNOWN)
        self.apply_button = PushButton(text="Set")
        self.apply_button.changed.connect(self.apply)
        self.native_box = Container(widgets=[self.field, self.apply_button], layout="horizontal")
        self.native = self.native_box.native
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Enable the field for an image without a stated size; show the size otherwise."""
        layer = self.current_layer()
        needed = needs_pixel_size(layer)
        meta = plugin_meta(layer)
        known = _scale.pixel_size_um(meta)
        self.field.value = known or self.field.min
        for widget in (self.field, self.apply_button):
            widget.enabled = needed
        self.native.setToolTip(
            "the file does not state its pixel size: type the scanner's µm per level-0 pixel "
            "so the slide is shown and analysed at its physical scale"
            if needed
            else "the image's pixel size, from its file"
        )

    def typed(self) -> float | None:
        """The size in the field, None while it reads "unknown"."""
        value = float(self.field.value)
        return None if value <= self.field.min else value

    def apply(self, *_: Any) -> bool:
        """Set the typed size on the chosen image; False (and a notification) if refused."""
        layer = self.current_layer()
        if not needs_pixel_size(layer):
            return False
        try:
            size = self.typed()
            if size is None:
                raise InvalidInputError(
                    f"{layer.name}: the pixel size is unknown; type the scanner's µm per "
                    "level-0 pixel (e.g. 0.25 at 40×) before pressing Set."
                )
            set_pixel_size(self.viewer, layer, size)
        except InvalidInputError as error:
            notify_exception(error, "Pixel size")
            return False
        show_info(f"{layer.name}: {self.field.value:.4g} µm per pixel; the scale bar is in µm.")
        self.refresh()
        return True
