"""The Analyze widget's advanced slide settings: what ``pathreview predict-slides`` sets with
``--model-um-per-px``, ``--min-tissue`` and ``--no-tissue``, folded away under one button.

The fields feed the ``SlideSettings`` the CLI builds from its flags, so the defaults shown are
that dataclass's and a value is checked by its rules, not by limits written here: the µm/px
and tissue fields take text (a spin box would clamp a bad value instead of refusing it), and a
refusal names the field as labelled here (``errors.reported_as``). The slide's own µm/px is
the pixel-size field above it (``_pixel_size``), since it also scales the layer.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, Container, LineEdit
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QToolButton, QVBoxLayout, QWidget

from napari_pathreview.errors import InvalidInputError, reported_as
from napari_pathreview.inference.slide_grid import SlideScaleError, SlideSettings, model_um_per_px

DEFAULTS = SlideSettings()
TITLE = "Advanced slide settings"
MODEL_UM_LABEL = "model µm/px"
MIN_TISSUE_LABEL = "min tissue"
GLASS_TEXT = "classify glass tiles too (no tissue detection)"
#: ``SlideSettings`` field → the label a refusal names it by
FIELD_LABELS = {"model_um_per_px": MODEL_UM_LABEL, "min_tissue": MIN_TISSUE_LABEL}


def _typed(text: str) -> float | str | None:
    """A field's number; blank is None (not set) and anything else is kept as typed, so
    ``SlideSettings`` refuses it with the value the user sees."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


class SlideSettingsBox(QWidget):
    """A fold-out group: the model's µm/px, the least tissue fraction, glass tiles."""

    def __init__(self) -> None:
        super().__init__()
        self.toggle = QToolButton()
        self.toggle.setText(TITLE)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.toggled.connect(self.expand)
        self.model_um = LineEdit(label=MODEL_UM_LABEL, value="")
        self.min_tissue = LineEdit(label=MIN_TISSUE_LABEL, value=f"{DEFAULTS.min_tissue:g}")
        self.glass = CheckBox(text=GLASS_TEXT, value=not DEFAULTS.tissue)
        self.model_um.tooltip = (
            "the µm per pixel the model was trained at; blank: the model card's "
            "(give it for a card registered without one)"
        )
        self.min_tissue.tooltip = "least tissue fraction of a tile for it to be classified (0–1)"
        self.body = Container(widgets=[self.model_um, self.min_tissue, self.glass])
        self.body.native.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body.native)

    def expand(self, shown: bool) -> None:
        """Show or fold away the fields."""
        self.toggle.setChecked(shown)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.body.native.setVisible(shown)

    def set_card(self, card: Any) -> None:
        """Say in the blank model field what the card states, or that it states none."""
        stated = None
        if card is not None:
            try:
                stated = model_um_per_px(card, DEFAULTS)
            except SlideScaleError:
                stated = None
        hint = f"card: {stated:g}" if stated is not None else "card states none"
        self.model_um.native.setPlaceholderText(hint if card is not None else "")

    def settings(self, mode: str, applies: bool = True) -> SlideSettings:
        """The ``SlideSettings`` of ``mode`` and these fields; with ``applies`` False (the
        group is hidden: a mammogram model tiles nothing) the defaults, whatever the fields
        hold, so a value left in a hidden field never refuses a run.

        Raises:
            InvalidInputError: a value out of range, naming its field as labelled here.
        """
        if not applies:
            return SlideSettings(mode=mode)
        with reported_as(FIELD_LABELS):
            return SlideSettings(
                mode=mode,
                model_um_per_px=_typed(self.model_um.value),  # type: ignore[arg-type]
                min_tissue=_typed(self.min_tissue.value),  # type: ignore[arg-type]
                tissue=not self.glass.value,
            )

    def state(self) -> dict[str, Any]:
        """The fields as a saved session keeps them, by ``SlideSettings`` field: a number,
        None for a blank µm/px, or the text typed when it is not a number (refused on
        restore, naming the key, as Run refuses it)."""
        return {
            "model_um_per_px": _typed(self.model_um.value),
            "min_tissue": _typed(self.min_tissue.value),
            "tissue": not self.glass.value,
        }

    def restore(self, field: str, value: Any) -> None:
        """Put back one field of :meth:`state`, checked first by the rule a typed value meets
        (``SlideSettings``); a refused value leaves the field as it was.

        Raises:
            InvalidInputError: the value is refused, naming the field as labelled here.
            KeyError: ``field`` is not one of :meth:`state`'s.
        """
        if field == "tissue":
            if not isinstance(value, bool):
                raise InvalidInputError(f"'{GLASS_TEXT}' must be true or false, got {value!r}")
            self.glass.value = not value
            return
        edit = {"model_um_per_px": self.model_um, "min_tissue": self.min_tissue}[field]
        if isinstance(value, bool):  # JSON's true is no number of µm, though Python's 1 is
            value = str(value).lower()
        with reported_as(FIELD_LABELS):
            SlideSettings(**{field: value})
        edit.value = "" if value is None else repr(float(value))
