"""The Analyze dock's run: one analysis at a time in a napari worker thread, and which of its
events still apply when they arrive.

A mixin of ``AnalyzeWidget`` (the form, pickers and result panel stay there). The worker runs
:func:`~napari_pathreview.inference.analysis.analyse` so the viewer stays responsive and Cancel
works; a run superseded by a newer one, or finishing after the queue put another image into its
layer, must not land in the panel, progress bar or heat map of what is shown now.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference.analysis import AnalysisCancelled, AnalysisProgress, AnalysisResult
from napari_pathreview.inference.heatmap import HeatmapStream
from napari_pathreview.widgets import _frames, _recall, _results, _scale
from napari_pathreview.widgets._common import (
    _Failed,
    _guarded,
    eta_text,
    guard_triton_import,
    layer_modality,
)
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._notify import notify_exception, show_info


class RunsAnalysis:
    """Starts, cancels and follows the dock's analysis worker (Run and Cancel buttons)."""

    worker: Any
    _cancel: threading.Event
    _started: float
    _running_on: str | None
    _delivered: bool  # whether the current run's result reached the panel
    _stream: HeatmapStream

    def run(self, *_: Any) -> Any:
        """Start a run in a worker thread; returns the worker (None if the form is invalid)."""
        from napari.qt.threading import create_worker

        try:
            layer = self.image_layer
            if layer is None:
                raise InvalidInputError(
                    "choose an image layer to analyse (open one with File ▸ Open)."
                )
            model = self.model_combo.value
            _frames.refuse_stack(self.viewer, layer, model)  # a 2-D model never guesses a frame
            _results.level0_shape(layer)
            levels = _results.layer_levels(layer)
            request = self.request()
            other = self.two_film.other_layer()
            if other is not None:
                _frames.refuse_stack(self.viewer, other, model)
            other_film = None if other is None else _results.layer_levels(other)[0]
        except Exception as error:  # noqa: BLE001 - shown as a notification
            notify_exception(error, "Analyze")
            return None
        guard_triton_import()
        self._running_on = layer.name
        self._cancel = threading.Event()
        self._delivered = False
        image = levels if len(levels) > 1 else levels[0]
        self.worker = worker = create_worker(
            _guarded,
            request,
            image,
            layer_modality(layer),
            self._cancel,
            self.load_model,
            um_per_px=_scale.pixel_size_um(plugin_meta(layer)),
            other_film=other_film,
            other_name=other.name if other is not None else "",
            other_um_per_px=None if other is None else _scale.pixel_size_um(plugin_meta(other)),
            _start_thread=False,
        )
        self._stream = stream = HeatmapStream(self.viewer, layer, request.target_class)
        started = _recall.image_identity(layer)  # the queue may load another image into it
        worker.yielded.connect(lambda item: self._on_yield(item, layer, worker, started))
        worker.finished.connect(lambda: self._on_finished(worker, stream))
        self._set_running(True)
        self._started = time.perf_counter()
        self.status.setText("starting…")
        self.worker.start()
        return self.worker

    def cancel(self, *_: Any) -> None:
        """Ask the running analysis to stop at its next step (within one batch)."""
        self._cancel.set()
        if self.worker is not None:
            self.worker.quit()
        self.status.setText("cancelling…")

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setValue(0)

    def _on_finished(self, worker: Any, stream: HeatmapStream) -> None:
        stream.discard()  # a run that ended without its result leaves no partial heat map
        if worker is not self.worker:  # a run cancelled for a newer one: that one owns the buttons
            return
        try:
            self._set_running(False)
        except RuntimeError:  # the dock was closed while the run went on
            return
        if not self._delivered:  # cancelled or failed: a bar left at 49 % read as still going
            self.progress.reset()
        if self._cancel.is_set() and self.status.text() in ("cancelling…", "starting…"):
            self.status.setText("cancelled")

    def _on_yield(self, item: Any, layer: Any, worker: Any, started: Any) -> None:
        if worker is not self.worker:  # a superseded run: its progress, tiles or result would
            return  # land in the newer run's bar, status and heat map
        try:
            if isinstance(item, AnalysisResult) and _recall.image_identity(layer) != started:
                # the queue put another image in the layer: kept for its own image instead
                self.memory.remember(started[1], item.record())
                self.status.setText("the image changed while it ran: its result is kept for it")
                return
            self._handle(item, layer)
        except RuntimeError as error:  # the dock was closed while the run went on
            if "has been deleted" not in str(error):
                raise
            self._cancel.set()

    def _handle(self, item: Any, layer: Any) -> None:
        if isinstance(item, AnalysisProgress):
            self.progress.setValue(int(round(100 * item.fraction)))
            eta = eta_text(item.fraction, time.perf_counter() - self._started)
            if not self._cancel.is_set():
                self.status.setText(f"{item.step} · {eta}" if eta else item.step)
        elif isinstance(item, _Failed):
            if isinstance(item.error, AnalysisCancelled):
                self.status.setText("cancelled")
                show_info("Analysis cancelled; nothing was added.")
            else:
                self.clear_result()
                self.status.setText("failed — the previous result was cleared")
                notify_exception(item.error, "Analyze")
        elif isinstance(item, AnalysisResult):
            self.show_result(item, layer)
            self._delivered = True
        else:  # the slide engine's SlideStart / SlideBatch: the heatmap fills in as it runs
            self._stream.feed(item)
