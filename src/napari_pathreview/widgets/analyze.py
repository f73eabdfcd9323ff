"""The Analyze dock widget: pick an image and a model, classify, explain, score the CAM.

Thin by design: it gathers an :class:`AnalysisRequest`, runs :func:`analyse` in a napari
``thread_worker`` (so the viewer stays responsive and Cancel works; the run's lifecycle is
:mod:`._analyze_run`), and turns the result into a probability table, an explicit decision
line, a CAM layer and live IoU/Dice against an ROI layer. torch and timm are imported only
when Run is pressed.

napari hands plugin widgets a *proxied* viewer whose layers are proxies too, so layer kinds
are checked with ``isinstance`` against napari's layer classes, never by class name.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, Label
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.explain.methods import CAM_METHOD_NAMES
from napari_pathreview.inference.analysis import (
    AnalysisRequest,
    AnalysisResult,
    default_loader,
)
from napari_pathreview.inference.device import DEVICES
from napari_pathreview.inference.mil_maps import MAP_KINDS
from napari_pathreview.inference.slide_grid import MODES as SLIDE_MODES
from napari_pathreview.tta import TTA_MODES
from napari_pathreview.widgets import _pixel_size, _recall, _results, _scale
from napari_pathreview.widgets._analyze_run import RunsAnalysis
from napari_pathreview.widgets._colorbars import ColourBarFollower, follow_while_docked
from napari_pathreview.widgets._common import (
    analysis_roi_names,
    compact,
    fit_height,
    he_settings_apply,
    is_source_image,
    layer_modality,
)
from napari_pathreview.widgets._hole_outlines import show_holes
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._models import CardCatalog, describe_card, model_choices
from napari_pathreview.widgets._notify import show_warning
from napari_pathreview.widgets._result_view import ResultView
from napari_pathreview.widgets._review_state import own_roi_name
from napari_pathreview.widgets._roi_scores import NO_ROI, ScoresAgainstRoi
from napari_pathreview.widgets._slide_box import SlideSettingsBox
from napari_pathreview.widgets._stain_box import StainBox
from napari_pathreview.widgets._two_film_box import TwoFilmBox

logger = logging.getLogger(__name__)

CAM_METHODS = CAM_METHOD_NAMES  # the one list (explain.methods); "none" is added in the combo
PREDICTED = "(predicted class)"


class AnalyzeWidget(RunsAnalysis, _recall.RecallsPredictions, ScoresAgainstRoi, QWidget):
    """Classify and explain the chosen image layer with a registered model.

    Args:
        napari_viewer: the viewer this widget is docked in (napari's proxy from the menu).
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
        self._started = 0.0
        self._running_on: str | None = None
        self._delivered = False  # whether the current run's result reached the panel
        self.memory = _recall.PredictionMemory()  # this session's predictions, by image
        self.catalog = CardCatalog()
        self._tta_set_for: str | None = None  # the model whose card last set the TTA choice
        self.pixel_size = _pixel_size.PixelSizeBox(self.viewer, lambda: self.image_layer)
        self._build_form()
        self._build_results()
        layout = QVBoxLayout(self)
        boxes = (self.form.native, self.two_film, self.pixel_size.native, self.slide_box)
        for box in (*boxes, self.stain_box):
            layout.addWidget(box)
        layout.addWidget(self.overlay_box.native)
        layout.addLayout(self._buttons)
        for widget in (self.progress, self.status, *self.view.widgets, self.roi_label):
            layout.addWidget(widget)
        layout.addStretch(1)
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self.reset_choices)
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        show_holes(self.viewer)  # its ROI layers' hole outlines follow its layer list
        self.viewer.layers.selection.events.active.connect(self._follow_active)
        self.colour_bars = ColourBarFollower(self.viewer)
        follow_while_docked(self, self.colour_bars)
        self.reset_choices()
        self._image_changed()

    # ----------------------------------------------------------------- layout
    def _build_form(self) -> None:
        self.all_models = CheckBox(text="show models of every modality", value=False)
        self.image_combo = ComboBox(label="Image", choices=self._image_names)
        self.model_combo = ComboBox(label="Model", choices=self._model_choices)
        self.model_info = Label(label="", value="")
        self.qc = CheckBox(text="quality control (blur, tissue)", value=True)
        self.tta = ComboBox(label="TTA", choices=TTA_MODES, value="none")
        self.device = ComboBox(label="Device", choices=DEVICES, value="auto")
        self.cam_method = ComboBox(label="CAM", choices=self._cam_choices, value="gradcam")
        # large images: "matched" tiles at the model's µm/px; "preview" is the coarse quick look
        self.slide_mode = ComboBox(label="Slide tiling", choices=SLIDE_MODES, value="matched")
        self.target_class = ComboBox(label="Target", choices=self._class_choices)
        self.roi_combo = ComboBox(label="ROI layer", choices=self._roi_names)
        self.threshold = FloatSlider(label="CAM threshold", min=0.0, max=1.0, step=0.01, value=0.5)
        self.auto_run = CheckBox(text="run automatically on each new image", value=False)
        self.form = Container(
            widgets=[
                self.image_combo,
                self.model_combo,
                self.all_models,
                self.model_info,
                self.qc,
                self.tta,
                self.device,
                self.cam_method,
                self.slide_mode,
                self.target_class,
                self.roi_combo,
                self.threshold,
                self.auto_run,
            ]
        )
        self.opacity = FloatSlider(label="CAM opacity", min=0.0, max=1.0, step=0.05, value=0.7)
        self.overlay_box = Container(widgets=[self.opacity])
        self.slide_box = SlideSettingsBox()  # predict-slides' scale and tissue flags
        self.stain_box = StainBox(self.viewer, self._image_names)
        self.stain_box.current_image = lambda: self.image_combo.value
        self.two_film = TwoFilmBox(self.viewer, self._image_names)
        compact(
            self.image_combo, self.model_combo, self.model_info, self.target_class, self.roi_combo
        )
        self.image_combo.changed.connect(self._image_changed)
        self.all_models.changed.connect(self._refresh_models)
        self.model_combo.changed.connect(self._show_model_info)
        self.roi_combo.changed.connect(self._watch_roi_layer)
        self.threshold.changed.connect(self.update_roi_scores)
        self.opacity.changed.connect(self._set_opacity)

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
        self.status.setWordWrap(True)
        self.view = ResultView()
        self.table, self.decision, self.caveats, self.metrics = self.view.widgets
        self.roi_label = QLabel("IoU / Dice: —")
        self.roi_label.setWordWrap(True)

    # ---------------------------------------------------------------- choices
    def _image_names(self, _widget: Any = None) -> list[str]:
        return [layer.name for layer in self.viewer.layers if is_source_image(layer)]

    def _roi_names(self, _widget: Any = None) -> list[str]:
        return [NO_ROI, *analysis_roi_names(self.viewer.layers, self.image_layer)]

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        modality = None
        if not self.all_models.value and self.image_layer is not None:
            modality = layer_modality(self.image_layer)
        return model_choices(modality, self.catalog)

    def _class_choices(self, _widget: Any = None) -> list[str]:
        card = self.selected_card() if hasattr(self, "model_combo") else None
        return [PREDICTED, *(list(card.classes) if card is not None else [])]

    def _cam_choices(self, _widget: Any = None) -> list[str]:
        """Every model's CAMs; a patch MIL model adds its own patch and attention maps."""
        card = self.selected_card() if hasattr(self, "model_combo") else None
        own = MAP_KINDS if card is not None and card.architecture == "patch_mil" else ()
        return [*CAM_METHODS, *own, "none"]

    def reset_choices(self, *_: Any) -> None:
        """Refresh every picker (napari also calls this when layers change)."""
        self.form.reset_choices()
        self.stain_box.refresh_layers()
        self._show_model_info()

    def _refresh_models(self, *_: Any) -> None:
        self.model_combo.reset_choices()
        self.target_class.reset_choices()
        self._show_model_info()

    def _image_changed(self, *_: Any) -> None:
        layer = self.image_layer
        shown = self.result_layer
        if shown is not None and (layer is None or layer.name != shown.name):  # proxies: by name
            # the panel only ever shows the chosen image's result: another image's numbers
            # (and its CAM scored against this image's ROI) would read as this one's
            self.clear_result()
        self._refresh_models()
        if layer is not None:
            _scale.show_scale_bar(self.viewer, layer)
        self.pixel_size.refresh()
        self.roi_combo.reset_choices()
        if self.roi_combo.value in (None, NO_ROI):  # the image's own ROI, when it has one
            own = own_roi_name(
                self.viewer, [n for n in self.roi_combo.choices if n != NO_ROI], layer
            )
            if own is not None:
                self.roi_combo.value = own
        self.recall_prediction()

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
        return self.catalog.card(str(ref))

    def _show_model_info(self, *_: Any) -> None:
        card = self.selected_card()
        if card is not None and card.ref != self._tta_set_for:
            # a newly picked model reads with the views its threshold and calibration assume
            self._tta_set_for, self.tta.value = card.ref, card.tta
        if tuple(self.target_class.choices) != tuple(self._class_choices()):
            self.target_class.choices = ()  # magicgui appends new items; rebuild in class order
            self.target_class.choices = self._class_choices
        if tuple(self.cam_method.choices) != tuple(self._cam_choices()):
            self.cam_method.reset_choices()
        self.stain_box.set_card(card)
        self.slide_box.set_card(card)
        self.two_film.set_context(card, self.image_layer)
        for box in (self.stain_box, self.slide_box):
            box.setVisible(he_settings_apply(card))
        if card is None:
            self.model_info.value = f"{self._no_model()} — run `pathreview demo` or train one"
            return
        self.model_info.value = describe_card(card)
        fit_height(self.model_info, self.stain_box.reason)

    def _no_model(self) -> str:
        layer = self.image_layer
        return f"no {layer_modality(layer) if layer is not None else 'suitable'} model registered"

    def follow(self, name: str, run: bool | None = None) -> Any:
        """Show image ``name`` (the review queue's current one) and run if asked or auto-run.

        Returns the worker when a run started.
        """
        self.reset_choices()
        if name not in self.image_combo.choices:
            return None
        self.image_combo.value = name
        self.recall_prediction()
        analysed = bool(plugin_meta(self.viewer.layers[name]).get("prediction"))
        if not (run if run is not None else self.auto_run.value and not analysed):
            return None
        if self.worker is not None and self.worker.is_running:
            if self._running_on == name:
                return self.worker  # already on it (selection and queue both asked)
            self.cancel()
        return self.run()

    def _layer_inserted(self, event: Any) -> None:
        """An ROI layer added in pixels over the chosen image gets its units (napari warns)."""
        _results.match_roi_units(self.viewer, event.value, self.image_layer)

    def _follow_active(self, *_: Any) -> None:
        """The selected image becomes the one to analyse (and runs, with auto-run on)."""
        active = self.viewer.layers.selection.active
        if active is not None and is_source_image(active) and active.name != self.image_combo.value:
            self.follow(active.name)

    # -------------------------------------------------------------------- run
    def request(self) -> AnalysisRequest:
        """The settings the form holds now (stain availability is checked from the card); a
        bad advanced slide setting is refused here, by its field's name, before any run."""
        if not self.model_combo.value:
            raise InvalidInputError(
                f"{self._no_model()}; run `pathreview demo` to train the demo models, or "
                "`pathreview train RECIPE.yaml`, then reopen this widget."
            )
        target = self.target_class.value
        applies = he_settings_apply(self.selected_card())  # hidden boxes do not apply
        return AnalysisRequest(
            model_ref=str(self.model_combo.value),
            device=str(self.device.value),
            stain=self.stain_box.value() if applies else None,
            qc=bool(self.qc.value),
            tta=str(self.tta.value),
            cam_method=None if self.cam_method.value == "none" else str(self.cam_method.value),
            target_class=None if target in (None, PREDICTED) else str(target),
            slide=self.slide_box.settings(str(self.slide_mode.value), applies),
        )

    # ---------------------------------------------------------------- results
    def clear_result(self, *_: Any) -> None:
        """Forget the shown result so no stale numbers stay on screen (also when the analysed
        layer starts showing another image: the queue reuses layers)."""
        self._watch_result_layer(None)
        self.result = self.result_layer = None
        self.view.clear()
        self.two_film.show_decision(None)
        if self.worker is None or not self.worker.is_running:  # a run's progress still holds
            self.status.setText("")  # "done in 1.8 s" over an empty panel read as this image's
        self.update_roi_scores()

    def _watch_result_layer(self, layer: Any) -> None:
        if self.result_layer is not None:
            with contextlib.suppress(RuntimeError, TypeError, ValueError):
                self.result_layer.events.data.disconnect(self.clear_result)
        if layer is not None:
            layer.events.data.connect(self.clear_result)

    def show_result(self, result: AnalysisResult, layer: Any) -> None:
        """Put a finished analysis into the viewer and the panel."""
        if self.image_combo.value != layer.name and layer.name in self.image_combo.choices:
            self.image_combo.value = layer.name  # the panel names no image: the picker does
        self._watch_result_layer(layer)
        self.result, self.result_layer = result, layer
        record = result.record()
        _recall.put_prediction(layer, record)  # fires the metadata event: Review listens
        self.memory.remember(_recall.image_sha256(layer), record)
        stream = getattr(self, "_stream", None)
        if result.tiled is not None and stream is not None:
            stream.show(result.tiled)  # the streamed heatmap, complete (or a cache hit's)
        if result.cam is not None:
            _results.add_cam_layer(
                self.viewer,
                layer,
                result.cam.cam,
                result.cam.method,
                getattr(result.cam, "target_label", "") or "",
                opacity=float(self.opacity.value),
            )
        self.viewer.layers.selection.active = layer
        self.view.fill(result)
        self.two_film.show_decision(result.two_film, result.card)
        notes = [f"Quality check: {warning}" for warning in result.warnings]
        for note in notes + ([f"No CAM: {result.cam_note}"] if result.cam_note else []):
            show_warning(note)
        self.status.setText(_done_text(result))
        self.update_roi_scores()

    def _set_opacity(self, *_: Any) -> None:
        layer = self.result_layer
        cam = _results.cam_layer_of(self.viewer, layer) if layer is not None else None
        if cam is not None:
            cam.opacity = float(self.opacity.value)


def _done_text(result: Any) -> str:
    """The status line of a finished run; tiles read back from the slide cache say so, with
    the earlier run's time beside this run's (``predict``'s ``cached_run_seconds``)."""
    text = f"done in {result.seconds:.1f} s"
    tiled = result.tiled
    if tiled is not None and getattr(tiled, "cached", False):
        text += f" (tiles from the cache of a {tiled.seconds:.1f} s run)"
    return text
