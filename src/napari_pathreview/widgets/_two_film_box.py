"""The Analyze widget's two-film row: a mammogram read against the same woman's other film.

Shown only for a model whose card carries a two-film calibration (a lesion-aware mammogram run
with ``lesion.bilateral``). The other film is picked among the open images, preselected when
exactly one of them names the same patient (MIAS numbers, DICOM PatientID). The decision is
computed by ``inference.analysis`` with the rest of the run; this box gathers and shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel

from napari_pathreview.bilateral import not_a_pair
from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.patients import FilmSide
from napari_pathreview.widgets import _panel
from napari_pathreview.widgets._common import layer_modality
from napari_pathreview.widgets._layer_meta import plugin_meta

NO_OTHER = "(read this film alone)"


def _patient(layer: Any) -> str | None:
    patient = plugin_meta(layer).get("patient_id")
    return str(patient) if patient not in (None, "") else None


def _side(layer: Any) -> FilmSide:
    meta = plugin_meta(layer)
    return FilmSide.of(meta.get("laterality"), meta.get("view"))


def check_pair(image_layer: Any, other: Any) -> None:
    """Refuse, naming both layers, an other film the files say is not her other breast."""
    mine, theirs = _patient(image_layer), _patient(other)
    if mine is not None and theirs is not None and mine != theirs:
        raise InvalidInputError(
            f"two films: '{other.name}' is patient {theirs}'s and '{image_layer.name}' patient "
            f"{mine}'s; choose the same woman's other film, or read this film alone"
        )
    why = not_a_pair(mine or "?", "", [_side(image_layer), _side(other)])
    if why:
        raise InvalidInputError(
            f"two films: '{image_layer.name}' and '{other.name}': {why}; a two-film reading "
            "compares her left breast with her right in one view: choose that film, or read "
            "this film alone"
        )


class TwoFilmBox(QGroupBox):
    """Other-film picker and the two-film decision of the last run.

    Args:
        viewer: the (possibly proxied) napari viewer.
        image_names: callable listing the analysable image layers.
    """

    def __init__(self, viewer: Any, image_names: Callable[[], list[str]]) -> None:
        super().__init__("Two films (her other breast)")
        self.viewer = viewer
        self._image_names = image_names
        self._image: str | None = None
        self._by_hand = False  # the reader picked the other film (or none) for this image
        self.other = QComboBox()
        self.other.currentTextChanged.connect(self._picked)  # refills below block it
        self.text = QLabel("")
        self.text.setWordWrap(True)
        layout = QFormLayout(self)
        layout.addRow("Other film", self.other)
        layout.addRow(self.text)
        self.setVisible(False)

    def set_context(self, card: Any, image_layer: Any) -> None:
        """Show the row for a model that can read two films; refill the picker with the other
        open mammograms (a new image gets its own woman's other film preselected)."""
        self.setVisible(card is not None and getattr(card, "bilateral", None) is not None)
        mine = image_layer.name if image_layer is not None else None
        if mine != self._image:  # by name: napari hands out a new proxy each time
            self._image, self._by_hand = mine, False
        current = self.other.currentText()
        names = [
            name
            for name in self._image_names()
            if name != mine and layer_modality(self.viewer.layers[name]) == "mammogram"
        ]
        self.other.blockSignals(True)
        self.other.clear()
        self.other.addItems([NO_OTHER, *names])
        keep = self._by_hand and (current == NO_OTHER or current in names)
        self.other.setCurrentText(current if keep else self._same_woman(image_layer, names))
        self.other.blockSignals(False)

    @property
    def picked_by_hand(self) -> bool:
        """Whether the reader chose the other film (or none) for this image, not the dock."""
        return self._by_hand

    def _picked(self, _text: str) -> None:
        self._by_hand = True

    def _same_woman(self, image_layer: Any, names: list[str]) -> str:
        patient = _patient(image_layer) if image_layer is not None else None
        same = [
            n for n in names if patient is not None and _patient(self.viewer.layers[n]) == patient
        ]
        if len(same) > 1:  # a four-view exam: her other breast in this view
            mine = _side(image_layer)
            same = [n for n in same if not not_a_pair("", "", [mine, _side(self.viewer.layers[n])])]
        return same[0] if len(same) == 1 else NO_OTHER

    def other_layer(self) -> Any:
        """The chosen other film's layer, or None (hidden row, nothing chosen, or gone).

        Raises:
            InvalidInputError: the files say it is another woman's, or not her other breast
                in this view (:func:`check_pair`).
        """
        name = self.other.currentText()
        if self.isHidden() or name == NO_OTHER or name not in self.viewer.layers:
            return None
        other = self.viewer.layers[name]
        if self._image is not None and self._image in self.viewer.layers:
            check_pair(self.viewer.layers[self._image], other)
        return other

    def show_decision(self, decision: Any, card: Any = None) -> None:
        """The last run's two-film decision (None clears it)."""
        self.text.setText("" if decision is None else _panel.two_film_text(decision, card))
