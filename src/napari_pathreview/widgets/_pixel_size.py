"""The Analyze widget's pixel-size field: a slide's level-0 µm/px, given or corrected.

A slide whose file states no size opens in pixels (the reader says so once) and
matched-resolution tiling refuses it: nothing is guessed. A file may also state a wrong
size (a TIFF's default 72 dpi reads as 352.8 µm/px). The field shows the stated size; a
size set here replaces it by the rule ``--mpp`` follows (``io.images.check_pixel_size``:
histology only, a positive finite number of µm, the file's value replaced). It becomes the
layer's scale in µm and ``metadata["pathreview"]["um_per_px"]`` (source ``"user"``, the
file's value kept as ``um_per_px_stated``), which is what the Analyze widget passes to
:func:`~napari_pathreview.inference.analysis.analyse` and a saved session keeps. ROIs, CAMs
and heat maps over the image follow it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from magicgui.widgets import Container, FloatSpinBox, PushButton

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io._core import FROM_NAME
from napari_pathreview.io.images import check_pixel_size
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
STATED = "um_per_px_stated"  # the file's own size, kept when one typed here replaces it


def can_set_pixel_size(layer: Any) -> bool:
    """Whether the field applies: a histology image (a stated size may be replaced, as
    ``--mpp`` replaces it; a mammogram's mm spacing is not µm/px of a slide)."""
    return layer is not None and layer_modality(layer) == "histology"


def stated_size(layer: Any) -> float | None:
    """The pixel size ``layer``'s file states, whether or not one set here replaced it."""
    meta = plugin_meta(layer)
    if meta.get("um_per_px_source") == USER:
        return meta.get(STATED)
    return _scale.pixel_size_um(meta)


def _rescaled(values: Any, factor: float) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    return (*values[:-2], values[-2] * factor, values[-1] * factor)


def set_pixel_size(viewer: Any, layer: Any, um_per_px: Any) -> None:
    """Give ``layer`` (and the layers drawn over it) a level-0 pixel size in µm, replacing
    the one its file states, if any.

    Raises:
        InvalidInputError: a size that is not a positive finite number, or not histology.
    """
    if not can_set_pixel_size(layer):
        raise InvalidInputError(
            f"{layer.name}: a pixel size in µm applies to histology images only"
        )
    size = check_pixel_size(um_per_px, layer.name)
    factor = size / float(layer.scale[-1])
    followers = [o for o in viewer.layers if not is_source_image(o) and belongs_to(o, layer)]
    meta = plugin_meta(layer)
    stated = stated_size(layer)
    if stated is not None and abs(stated - size) > 1e-9:
        logger.warning(
            "%s: pixel size %.4g µm given replaces %.4g µm from the file", layer.name, size, stated
        )
    meta.update(um_per_px=size, um_per_px_source=USER)
    if stated is not None:
        meta[STATED] = stated
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
        """Enable the field for a histology image; show its size (stated, or set here)."""
        layer = self.current_layer()
        settable = can_set_pixel_size(layer)
        known = _scale.pixel_size_um(plugin_meta(layer))
        self.field.value = known or self.field.min
        for widget in (self.field, self.apply_button):
            widget.enabled = settable
        self.native.setToolTip(_tooltip(layer, settable, known))

    def typed(self) -> float | None:
        """The size in the field, None while it reads "unknown"."""
        value = float(self.field.value)
        return None if value <= self.field.min else value

    def apply(self, *_: Any) -> bool:
        """Set the typed size on the chosen image; False (and a notification) if refused."""
        layer = self.current_layer()
        if not can_set_pixel_size(layer):
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
        stated = stated_size(layer)
        replaced = f" (replaces the file's {stated:.4g})" if stated is not None else ""
        show_info(f"{layer.name}: {size:.4g} µm per pixel{replaced}; the scale bar is in µm.")
        self.refresh()
        return True


def _tooltip(layer: Any, settable: bool, known: float | None) -> str:
    """What the field holds: the file's size, one set here (and what it replaced), or none."""
    if not settable:
        return "a pixel size in µm applies to histology images"
    if known is None:
        return (
            "the file does not state its pixel size: type the scanner's µm per level-0 pixel "
            "so the slide is shown and analysed at its physical scale"
        )
    stated = stated_size(layer)
    source = plugin_meta(layer).get("um_per_px_source")
    if source == FROM_NAME:
        return "the pixel size its dataset documents for this file name; type another if wrong"
    if source != USER:
        return "the pixel size the file states; type another and press Set if it is wrong"
    if stated is None:
        return "the pixel size set here (the file states none)"
    return f"the pixel size set here; the file states {stated:.4g} µm/px"
