"""The Analyze widget's stain panel: pick a method the card can serve, or supply a target.

Methods the model card cannot serve (Macenko or Vahadane without a fitted target) are
disabled in the picker with the reason as their tooltip and under the picker, decided from
the card alone, before any weights load. A user target is fitted to an image layer (in a
worker, Vahadane's dictionary learning takes seconds) or read from a JSON file written by
``pathreview stain fit``; "Compare" adds the current image under every usable method side
by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
)

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets import _results, _stain
from napari_pathreview.widgets._notify import notify_exception, show_info

logger = logging.getLogger(__name__)

COMPARE_KIND = "stain_view"


def fit_refusal(layer: Any) -> str | None:
    """Why a stain target cannot be fitted to ``layer``, or None: a mammogram is kept out by
    the rule ``stain fit`` and ``stain apply`` use (``stain._imageio.not_histology``, with the
    layer's modality from its metadata), and the fit reads RGB pixels."""
    from napari_pathreview.stain._imageio import not_histology
    from napari_pathreview.widgets._common import layer_modality

    if not _results.is_image(layer):
        return "not an image layer"
    reason = not_histology(layer_modality(layer), "stain normalisation")
    if reason is not None:
        return reason
    return None if getattr(layer, "rgb", False) else "not an RGB H&E image"


class StainBox(QGroupBox):
    """Stain method picker plus user targets.

    Args:
        viewer: the (possibly proxied) napari viewer.
        image_names: callable listing the analysable image layers.
    """

    def __init__(self, viewer: Any, image_names: Callable[[], list[str]]) -> None:
        super().__init__("Stain normalisation")
        self.viewer = viewer
        self._image_names = image_names
        self.card: Any = None
        self.user_target: dict[str, Any] | None = None
        self.fit_worker: Any = None
        self.options: list[_stain.StainOption] = []
        self.method = QComboBox()
        self.reason = QLabel("")
        self.reason.setWordWrap(True)
        self.target_label = QLabel("user target: none")
        self.target_label.setWordWrap(True)
        self.fit_method = QComboBox()
        self.fit_method.addItems(["macenko", "vahadane", "reinhard"])
        self.fit_layer = QComboBox()
        for combo in (self.method, self.fit_layer):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(10)
        self.fit_button = QPushButton("Fit to layer")
        self.load_button = QPushButton("Load target…")
        self.compare_button = QPushButton("Compare methods")
        self.fit_button.clicked.connect(lambda: self.fit_to_layer(self.fit_layer.currentText()))
        self.load_button.clicked.connect(self._choose_file)
        self.compare_button.clicked.connect(lambda: self.compare(self._current_image()))
        self.method.currentIndexChanged.connect(self._show_reason)
        layout = QFormLayout(self)
        layout.addRow("Method", self.method)
        layout.addRow(self.reason)
        fit_row = QHBoxLayout()
        fit_row.addWidget(self.fit_method)
        fit_row.addWidget(self.fit_layer, 1)
        layout.addRow("Fit", fit_row)
        buttons = QHBoxLayout()
        for button in (self.fit_button, self.load_button, self.compare_button):
            buttons.addWidget(button)
        layout.addRow(buttons)
        layout.addRow(self.target_label)
        self.current_image: Callable[[], str | None] = lambda: None
        self.set_card(None)

    # ---------------------------------------------------------------- options
    def set_card(self, card: Any) -> None:
        """Recompute which methods can run for ``card`` (None: no model picked)."""
        key = (None if card is None else (card.name, card.version), repr(self.user_target))
        if self.options and key == getattr(self, "_options_key", None):
            return  # refreshed on every layer change: rebuild only when something changed
        self._options_key = key
        self.card = card
        keep = self.method.currentText() or "card"
        self.options = _stain.stain_options(card, self.user_target)
        self.method.blockSignals(True)
        self.method.clear()
        model = self.method.model()
        for index, option in enumerate(self.options):
            self.method.addItem(option.method)
            item = model.item(index)
            item.setEnabled(option.available)
            item.setToolTip(option.reason)
        names = [o.method for o in self.options]
        usable = [o.method for o in self.options if o.available]
        chosen = keep if keep in usable else usable[0]
        self.method.setCurrentIndex(names.index(chosen))
        self.method.blockSignals(False)
        self._show_reason()

    def refresh_layers(self) -> None:
        """Re-list the image layers a target can be fitted to (:func:`fit_refusal`: no
        mammograms, which fitting would refuse)."""
        keep = self.fit_layer.currentText()
        layers = self.viewer.layers
        self.fit_layer.clear()
        self.fit_layer.addItems([n for n in self._image_names() if fit_refusal(layers[n]) is None])
        if keep:
            self.fit_layer.setCurrentText(keep)

    def disabled_reasons(self) -> dict[str, str]:
        """Method → why it cannot run now (what the picker shows greyed out)."""
        return {o.method: o.reason for o in self.options if not o.available}

    def _show_reason(self, *_: Any) -> None:
        unavailable = self.disabled_reasons()
        needs_target = [m for m in unavailable if m in ("macenko", "vahadane") and m != "card"]
        lines = [f"{m}: {r}" for m, r in unavailable.items() if m not in needs_target]
        if needs_target:
            lines.append(
                f"{' and '.join(needs_target)} unavailable: the card has no fitted target; "
                "fit one to an image layer or load a target JSON below"
            )
        self.reason.setText("\n".join(lines))

    def select(self, method: str) -> None:
        """Pick ``method``; refused with its reason when the card cannot serve it."""
        reasons = self.disabled_reasons()
        if method in reasons:
            raise InvalidInputError(f"stain method {method!r} is unavailable: {reasons[method]}")
        self.method.setCurrentText(method)

    def value(self) -> Any:
        """What the analysis request takes: None (card), a method name or a fitted state."""
        method = self.method.currentText() or "card"
        if method in self.disabled_reasons():
            raise InvalidInputError(
                f"stain {method!r} cannot run: {self.disabled_reasons()[method]}"
            )
        if method == "card":
            return None
        if self.user_target and self.user_target.get("method") == method:
            return dict(self.user_target)
        return method

    # ---------------------------------------------------------------- targets
    def set_user_target(self, state: dict[str, Any], source: str) -> None:
        """Use ``state`` (a fitted normaliser's dict) as the user's target and select it."""
        self.user_target = dict(state)
        self.target_label.setText(f"user target: {state['method']} from {source}")
        self.set_card(self.card)
        self.method.setCurrentText(str(state["method"]))

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Stain target JSON", "", "JSON (*.json)")
        if path:
            self.load_target_file(path)

    def load_target_file(self, path: str) -> dict[str, Any] | None:
        """Read a target written by ``pathreview stain fit``; errors become notifications."""
        try:
            state = _stain.load_target(path)
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Stain target")
            return None
        self.set_user_target(state, str(path))
        return state

    def fit_to_layer(self, name: str) -> Any:
        """Fit the chosen method to an image layer in a worker; returns the worker."""
        from napari.qt.threading import create_worker

        method = self.fit_method.currentText()
        try:
            layer = self._layer(name)
            rgb = _stain.fit_level(_results.layer_levels(layer))
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Stain target")
            return None
        from napari_pathreview.widgets._common import failure_returned

        self.fit_button.setEnabled(False)
        before = self.target_label.text()
        self.target_label.setText(f"fitting {method} to {name}…")
        self.fit_worker = create_worker(
            failure_returned, _stain.fit_target, method, rgb, _start_thread=False
        )
        self.fit_worker.returned.connect(lambda state: self._fitted(state, name, before))
        self.fit_worker.finished.connect(lambda: self.fit_button.setEnabled(True))
        self.fit_worker.start()
        return self.fit_worker

    def _fitted(self, state: Any, name: str, before: str) -> None:
        """A fit's outcome: the user target, or a notice naming the layer (no traceback)
        with the target line back to the target still in use."""
        from napari_pathreview.widgets._common import _Failed

        if isinstance(state, _Failed):
            self.target_label.setText(before)
            notify_exception(state.error, f"Stain fit to {name!r}")
            return
        self.set_user_target(state, name)

    def _layer(self, name: str | None) -> Any:
        """The H&E image layer ``name``; any other is refused with :func:`fit_refusal`'s
        reason, naming the layer."""
        if not name or name not in self.viewer.layers:
            raise InvalidInputError("choose an H&E image layer (open one with File ▸ Open).")
        layer = self.viewer.layers[name]
        reason = fit_refusal(layer)
        if reason is not None:
            raise InvalidInputError(f"layer {name!r}: {reason}; choose an H&E image layer.")
        return layer

    def _current_image(self) -> str | None:
        return self.current_image()

    def compare(self, name: str | None) -> list[Any]:
        """Add the image under every usable method, in a row to the right of it."""
        try:
            layer = self._layer(name)
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Compare")
            return []
        rgb = np.asarray(_results.layer_levels(layer)[-1] if layer.multiscale else layer.data)
        targets: dict[str, Any] = {}
        card_target = getattr(self.card, "stain_target", None)
        if card_target:
            targets[str(card_target["method"]).lower()] = card_target
        if self.user_target:
            targets[str(self.user_target["method"])] = self.user_target
        views = _stain.normalisation_views(rgb, targets, _stain.STAIN_METHODS)
        return self._add_views(layer, views)

    def _add_views(self, layer: Any, views: dict[str, np.ndarray]) -> list[Any]:
        rows, cols = _results.level0_shape(layer)
        scale = np.asarray(layer.scale[-2:], dtype=float)
        added = []
        for column, (method, view) in enumerate(views.items(), start=1):
            factor = np.array([rows / view.shape[0], cols / view.shape[1]])
            shift = np.array([0.0, column * cols * scale[1] * 1.05])
            offset = np.asarray(layer.translate[-2:], dtype=float) + shift
            name = f"stain {method} · {layer.name}"
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            added.append(
                self.viewer.add_image(
                    view,
                    name=name,
                    rgb=True,
                    scale=tuple(scale * factor),
                    translate=tuple(offset + (factor - 1) / 2 * scale),
                    metadata={"pathreview": {"kind": COMPARE_KIND, "image": layer.name}},
                    **_results.units_of(layer),
                )
            )
        show_info(f"Added {len(added)} stain views beside {layer.name}: " + ", ".join(views))
        return added
