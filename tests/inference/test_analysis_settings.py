"""What an Analyze run records of its slide settings, and which recorded runs match."""

from __future__ import annotations

from napari_pathreview.inference.analysis import AnalysisRequest, prediction_settings
from napari_pathreview.inference.slide_grid import SlideSettings


def test_default_slide_settings_match_a_prediction_recorded_before_they_were_choosable() -> None:
    recorded = {"tta": "none", "stain": "card", "tiled": None, "slide_mode": "matched"}
    chosen = AnalysisRequest("tiny@1").settings()
    assert chosen["slide_settings"] is None
    assert prediction_settings(chosen) == prediction_settings(recorded)


def test_a_changed_tissue_setting_is_recorded_and_makes_another_prediction() -> None:
    default = AnalysisRequest("tiny@1").settings()
    chosen = AnalysisRequest("tiny@1", slide=SlideSettings(min_tissue=0.6, tissue=False))
    assert chosen.settings()["slide_settings"] == {"min_tissue": 0.6, "tissue": False}
    assert prediction_settings(chosen.settings()) != prediction_settings(default)
