"""The Analyze dock's live IoU / Dice of the shown CAM against the chosen ROI layer.

A mixin of ``AnalyzeWidget``: the scores follow every edit of the ROI (drawing, painting)
and every move of the threshold slider, by seed 004's protocol (``explain.metrics``).
"""

from __future__ import annotations

from typing import Any

from napari_pathreview.explain.metrics import cam_is_empty, roi_scores
from napari_pathreview.widgets import _panel, _results
from napari_pathreview.widgets._notify import notify_exception

NO_ROI = "(no ROI)"


class ScoresAgainstRoi:
    """Keeps ``roi_scores`` and ``roi_label`` true to the CAM shown and the ROI layer chosen."""

    _roi_layer: Any
    roi_scores: dict[str, float] | None

    def _watch_roi_layer(self, *_: Any) -> None:
        if self._roi_layer is not None:
            for event in _results.roi_events(self._roi_layer):
                event.disconnect(self.update_roi_scores)
            self._roi_layer = None
        name = self.roi_combo.value
        if name and name != NO_ROI and name in self.viewer.layers:
            self._roi_layer = self.viewer.layers[name]
            for event in _results.roi_events(self._roi_layer):
                event.connect(self.update_roi_scores)
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
            scores = roi_scores(result.cam.cam, mask, float(self.threshold.value))
        except Exception as error:  # noqa: BLE001 - shown as a notification
            notify_exception(error, "ROI")
            return None
        self.roi_scores = scores
        text = _panel.roi_text(
            scores, float(self.threshold.value), roi.name, cam_is_empty(result.cam.cam)
        )
        self.roi_label.setText(text)
        return scores
