"""The Analyze dock widget: pick an image and a model, classify, explain, score the CAM.

Thin by design: it gathers an :class:`AnalysisRequest`, runs :func:`analyse` in a napari
``thread_worker`` (so the viewer stays responsive and Cancel works), and turns the result
into a probability table, a decision, a CAM layer and live IoU/Dice against an ROI layer.
torch and timm are imported only when Run is pressed.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, Label
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets import _results
from napari_pathreview.widgets._analysis import (
    AnalysisCancelled,
    AnalysisProgress,
    AnalysisRequest,
    AnalysisResult,
    analyse,
    default_loader,
)
from napari_pathreview.widgets._models import describe_card, model_choices
from napari_pathreview.widgets._notify import notify_exception, show_info, show_warning

logger = logging.getLogger(__name__)

CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "eigencam", "layercam", "xgradcam", "hirescam")
STAIN_CHOICES = ("card", "none", "reinhard", "macenko", "vahadane")
NO_ROI = "(no ROI)"
PREDICTED = "(predicted class)"


def layer_modality(layer: Any) -> str:
    """The layer's modality from the reader's metadata, else guessed: RGB → histology."""
    meta = getattr(layer, "metadata", {}) or {}
    modality = (meta.get("pathreview") or {}).get("modality")
    if modality in ("histology", "mammogram"):
        return modality
    return "histology" if getattr(layer, "rgb", False) else "mammogram"


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


class _Failed:
    """What the worker yields instead of raising, so napari never shows a traceback dialog."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _guarded(*args: Any, **kwargs: Any):
    """Run :func:`analyse`, turning any exception into a yielded :class:`_Failed`."""
    try:
        yield from analyse(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - reported by the widget, in the main thread
        yield _Failed(error)


class AnalyzeWidget(QWidget):
    """Classify and explain the chosen image layer with a registered model.

    Args:
        napari_viewer: the viewer this widget is docked in.
        load_model: ``(model_ref, device) -> (model, card)``; the registry by default.
    """

    def __init__(self, napari_viewer: Any, load_model: Any = default_loader) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.load_model = load_model
        self.worker: Any = None
        self.result: AnalysisResult | None = None
        self.result_layer: Any = None
        self.roi_scores: dict[str, float] | None = None
        self._cancel = threading.Event()
        self._roi_layer: Any = None
        self._build_form()
        self._build_results()
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addLayout(self._buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addWidget(self.decision)
        layout.addWidget(self.roi_label)
        layout.addStretch(1)
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self.reset_choices)
        self.reset_choices()

    # ----------------------------------------------------------------- layout
    def _build_form(self) -> None:
        self.all_models = CheckBox(text="show models of every modality", value=False)
        self.image_combo = ComboBox(label="Image", choices=self._image_names)
        self.model_combo = ComboBox(label="Model", choices=self._model_choices)
        self.model_info = Label(label="", value="")
        self.stain = ComboBox(label="Stain", choices=STAIN_CHOICES, value="card")
        self.qc = CheckBox(text="quality control (blur, tissue)", value=True)
        self.tta = ComboBox(label="TTA", choices=("none", "flips", "d4"), value="none")
        self.device = ComboBox(label="Device", choices=("auto", "cpu", "cuda"), value="auto")
        self.cam_method = ComboBox(label="CAM", choices=(*CAM_METHODS, "none"), value="gradcam")
        self.target_class = ComboBox(label="Target", choices=self._class_choices)
        self.roi_combo = ComboBox(label="ROI layer", choices=self._roi_names)
        self.threshold = FloatSlider(label="CAM threshold", min=0.0, max=1.0, step=0.01, value=0.5)
        self.form = Container(
            widgets=[
                self.image_combo,
                self.model_combo,
                self.all_models,
                self.model_info,
                self.stain,
                self.qc,
                self.tta,
                self.device,
                self.cam_method,
                self.target_class,
                self.roi_combo,
                self.threshold,
            ]
        )
        compact(
            self.image_combo, self.model_combo, self.model_info, self.target_class, self.roi_combo
        )
        self.image_combo.changed.connect(self._refresh_models)
        self.all_models.changed.connect(self._refresh_models)
        self.model_combo.changed.connect(self._show_model_info)
        self.roi_combo.changed.connect(self._watch_roi_layer)
        self.threshold.changed.connect(self.update_roi_scores)

    def _build_results(self) -> None:
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self._buttons = QHBoxLayout()
        self._buttons.addWidget(self.run_button)
        self._buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["class", "probability"])
        self.table.verticalHeader().setVisible(False)
        self.table.setMaximumHeight(130)
        self.decision = QLabel("")
        self.decision.setWordWrap(True)
        self.roi_label = QLabel("IoU / Dice: —")

    # ---------------------------------------------------------------- choices
    def _image_names(self, _widget: Any = None) -> list[str]:
        return [
            layer.name
            for layer in self.viewer.layers
            if type(layer).__name__ == "Image"
            and (layer.metadata.get("pathreview") or {}).get("kind") is None
        ]

    def _roi_names(self, _widget: Any = None) -> list[str]:
        names = [
            layer.name
            for layer in self.viewer.layers
            if type(layer).__name__ in ("Shapes", "Labels")
        ]
        return [NO_ROI, *names]

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        modality = None
        if not self.all_models.value and self.image_layer is not None:
            modality = layer_modality(self.image_layer)
        return model_choices(modality)

    def _class_choices(self, _widget: Any = None) -> list[str]:
        card = self.selected_card() if hasattr(self, "model_combo") else None
        return [PREDICTED, *(list(card.classes) if card is not None else [])]

    def reset_choices(self, *_: Any) -> None:
        """Refresh every picker (napari also calls this when layers change)."""
        self.form.reset_choices()
        self._show_model_info()

    def _refresh_models(self, *_: Any) -> None:
        self.model_combo.reset_choices()
        self.target_class.reset_choices()
        self._show_model_info()

    @property
    def image_layer(self) -> Any:
        if not hasattr(self, "image_combo"):
            return None
        name = self.image_combo.value
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def selected_card(self) -> Any:
        """The model card of the picked model, or None."""
        ref = self.model_combo.value
        if not ref:
            return None
        from napari_pathreview.widgets._models import card_for

        return card_for(ref)

    def _show_model_info(self, *_: Any) -> None:
        card = self.selected_card()
        if tuple(self.target_class.choices) != tuple(self._class_choices()):
            self.target_class.choices = ()  # magicgui appends new items; rebuild in class order
            self.target_class.choices = self._class_choices
        if card is None:
            layer = self.image_layer
            what = layer_modality(layer) if layer is not None else "any"
            self.model_info.value = (
                f"no {what} model registered — run `pathreview demo` or train one"
            )
            return
        self.model_info.value = describe_card(card)

    # -------------------------------------------------------------------- run
    def request(self) -> AnalysisRequest:
        """The settings the form holds now."""
        if not self.model_combo.value:
            layer = self.image_layer
            modality = layer_modality(layer) if layer is not None else "this"
            raise InvalidInputError(
                f"no {modality} model is registered; run `pathreview demo` to train the demo "
                "models, or `pathreview train RECIPE.yaml`, then reopen this widget."
            )
        target = self.target_class.value
        return AnalysisRequest(
            model_ref=str(self.model_combo.value),
            device=str(self.device.value),
            stain=None if self.stain.value == "card" else str(self.stain.value),
            qc=bool(self.qc.value),
            tta=str(self.tta.value),
            cam_method=None if self.cam_method.value == "none" else str(self.cam_method.value),
            target_class=None if target in (None, PREDICTED) else str(target),
        )

    def run(self, *_: Any) -> Any:
        """Start a run in a worker thread; returns the worker (None if the form is invalid)."""
        from napari.qt.threading import create_worker

        try:
            layer = self.image_layer
            if layer is None:
                raise InvalidInputError(
                    "choose an image layer to analyse (open one with File ▸ Open)."
                )
            _results.level0_shape(layer)
            levels = _results.layer_levels(layer)
            request = self.request()
        except Exception as error:  # noqa: BLE001 - shown as a notification
            notify_exception(error, "Analyze")
            return None
        guard_triton_import()
        self._cancel = threading.Event()
        image = levels if len(levels) > 1 else levels[0]
        self.worker = create_worker(
            _guarded,
            request,
            image,
            layer_modality(layer),
            self._cancel,
            self.load_model,
            _start_thread=False,
        )
        self.worker.yielded.connect(lambda item, layer=layer: self._on_yield(item, layer))
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.status.setText("starting…")
        self.worker.start()
        return self.worker

    def cancel(self, *_: Any) -> None:
        """Ask the running analysis to stop at its next step."""
        self._cancel.set()
        if self.worker is not None:
            self.worker.quit()
        self.status.setText("cancelling…")

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setValue(0)

    def _on_finished(self) -> None:
        self._set_running(False)
        if self._cancel.is_set() and self.status.text() in ("cancelling…", "starting…"):
            self.status.setText("cancelled")

    def _on_yield(self, item: Any, layer: Any) -> None:
        if isinstance(item, AnalysisProgress):
            self.progress.setValue(int(round(100 * item.fraction)))
            self.status.setText(item.step)
        elif isinstance(item, _Failed):
            if isinstance(item.error, AnalysisCancelled):
                self.status.setText("cancelled")
                show_info("Analysis cancelled; nothing was added.")
            else:
                self.status.setText("failed")
                notify_exception(item.error, "Analyze")
        elif isinstance(item, AnalysisResult):
            self.show_result(item, layer)

    # ---------------------------------------------------------------- results
    def show_result(self, result: AnalysisResult, layer: Any) -> None:
        """Put a finished analysis into the viewer and the panel."""
        self.result, self.result_layer = result, layer
        meta = dict(layer.metadata.get("pathreview") or {})
        meta["prediction"] = result.record()
        layer.metadata["pathreview"] = meta
        if result.tiled is not None:
            _results.add_tile_heatmap(self.viewer, layer, result.tiled, result.card.classes)
        if result.cam is not None:
            _results.add_cam_layer(self.viewer, layer, result.cam.cam, result.cam.method)
        self.viewer.layers.selection.active = layer
        self._fill_table(result)
        for warning in result.warnings:
            show_warning(f"Quality check: {warning}")
        self.status.setText(f"done in {result.seconds:.1f} s")
        self.update_roi_scores()

    def _fill_table(self, result: AnalysisResult) -> None:
        probs = result.probabilities
        self.table.setRowCount(len(probs))
        for row, (name, value) in enumerate(probs.items()):
            self.table.setItem(row, 0, QTableWidgetItem(name))
            self.table.setItem(row, 1, QTableWidgetItem(f"{value:.3f}"))
        threshold = result.prediction.threshold
        rule = f" (P({result.card.classes[-1]}) ≥ {threshold:.2f})" if threshold is not None else ""
        if result.prediction.qc is None:
            qc = "QC: not run (histology only)" if result.card.modality != "histology" else ""
        else:
            qc = "QC: passed" if not result.warnings else "QC: " + "; ".join(result.warnings)
        self.decision.setText(
            f"Decision: <b>{result.prediction.label}</b>{rule} — "
            f"{result.model_name}@{result.model_version}<br>{qc}"
        )

    # -------------------------------------------------------------------- ROI
    def _watch_roi_layer(self, *_: Any) -> None:
        if self._roi_layer is not None:
            self._roi_layer.events.data.disconnect(self.update_roi_scores)
            self._roi_layer = None
        name = self.roi_combo.value
        if name and name != NO_ROI and name in self.viewer.layers:
            self._roi_layer = self.viewer.layers[name]
            self._roi_layer.events.data.connect(self.update_roi_scores)
        self.update_roi_scores()

    def update_roi_scores(self, *_: Any) -> dict[str, float] | None:
        """Recompute IoU and Dice of the shown CAM against the ROI layer."""
        result, roi = self.result, self._roi_layer
        if result is None or result.cam is None or roi is None or roi not in self.viewer.layers:
            self.roi_scores = None
            self.roi_label.setText("IoU / Dice: — (run with a CAM and pick an ROI layer)")
            return None
        try:
            mask = _results.roi_mask(roi, self.result_layer)
            scores = _results.roi_scores(result.cam.cam, mask, float(self.threshold.value))
        except Exception as error:  # noqa: BLE001 - shown as a notification
            notify_exception(error, "ROI")
            return None
        self.roi_scores = scores
        self.roi_label.setText(
            f"IoU {scores['iou']:.3f} · Dice {scores['dice']:.3f} "
            f"(CAM ≥ {self.threshold.value:.2f} vs {roi.name})"
        )
        return scores
