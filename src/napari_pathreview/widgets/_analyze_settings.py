"""The Analyze dock's settings in a saved session: what the reader set, and put back one key
at a time through the checks a typed value meets.

Every setting the dock offers is kept (model, TTA, device, CAM and its target, tiling mode, the
advanced slide settings, stain method and target, ROI, threshold, opacity, auto-run, the other
film), so a restored workspace runs as it did. A key a session lacks (saved before it was kept)
leaves the dock's default; a value the dock would refuse (an unknown TTA, a min tissue of 1.5)
is left as the dock holds it and named, with its key and why, in one warning naming the session
file, while the other keys are restored (the one rule of :mod:`._session_keys`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from napari_pathreview.widgets._session_keys import (
    SkippedSettings,
    boolean,
    chosen,
    number,
    setter,
)
from napari_pathreview.widgets._two_film_box import NO_OTHER


def capture(analyze: Any) -> dict[str, Any]:
    """The dock's settings as a session file keeps them."""
    box, two_film = analyze.stain_box, analyze.two_film
    by_hand = not two_film.isHidden() and two_film.picked_by_hand
    return {
        "image": analyze.image_combo.value,
        "model": analyze.model_combo.value,
        "all_models": bool(analyze.all_models.value),
        "qc": bool(analyze.qc.value),
        "tta": analyze.tta.value,
        "device": analyze.device.value,
        "cam": analyze.cam_method.value,
        "target_class": analyze.target_class.value,
        "threshold": float(analyze.threshold.value),
        "opacity": float(analyze.opacity.value),
        "auto_run": bool(analyze.auto_run.value),
        "stain": box.method.currentText(),
        "stain_target": box.user_target,
        "roi": analyze.roi_combo.value,
        "other_film": two_film.other.currentText() if by_hand else None,
        "slide": {"mode": str(analyze.slide_mode.value), **analyze.slide_box.state()},
    }


def restore(analyze: Any, settings: Mapping[str, Any], skipped: SkippedSettings) -> None:
    """Put ``settings`` (a session's ``analyze`` block) back into the dock, in the order the
    pickers depend on one another (image → model → its TTA, CAMs and classes)."""

    def put(name: str, apply: Callable[[Any], None]) -> None:
        skipped.put(f"analyze.{name}", settings, name, apply)

    analyze.reset_choices()
    put("all_models", setter(analyze.all_models, boolean))
    for name, widget in (("qc", analyze.qc), ("auto_run", analyze.auto_run)):
        put(name, setter(widget, boolean))
    for name, widget in (("threshold", analyze.threshold), ("opacity", analyze.opacity)):
        put(name, setter(widget, number))
    put("device", setter(analyze.device))
    put("image", chosen(analyze.image_combo, "image layer"))
    put("model", chosen(analyze.model_combo, "registered model for this image"))
    # after the model, whose card sets its own TTA and offers its own CAMs and classes
    for name, widget in (
        ("tta", analyze.tta),
        ("cam", analyze.cam_method),
        ("target_class", analyze.target_class),
    ):
        put(name, setter(widget))
    put("stain_target", lambda state: _stain_target(analyze, state))
    put("stain", lambda method: _stain(analyze.stain_box, method))
    put("roi", chosen(analyze.roi_combo, "ROI layer"))
    put("other_film", lambda name: _other_film(analyze.two_film, name))
    slide = skipped.section("analyze.slide", settings, "slide")
    skipped.put("analyze.slide.mode", slide, "mode", setter(analyze.slide_mode))
    for name in ("model_um_per_px", "min_tissue", "tissue"):
        skipped.put(f"analyze.slide.{name}", slide, name, _slide_field(analyze.slide_box, name))
    skipped.unknown("analyze.slide", slide)
    skipped.unknown("analyze", settings)


def _slide_field(box: Any, name: str) -> Callable[[Any], None]:
    return lambda value: box.restore(name, value)


def _stain_target(analyze: Any, state: Any) -> None:
    """A fitted target, checked as a target file is (``stain.targets.check_target``)."""
    from napari_pathreview.stain.targets import check_target

    if state is not None:
        target = check_target(state, "the saved target")
        analyze.stain_box.set_user_target(target, "the saved session")


def _stain(box: Any, method: Any) -> None:
    """The stain method, refused (with why) as the picker refuses a greyed-out one."""
    names = [option.method for option in box.options]
    if method not in names:
        raise ValueError(f"{method!r} is not one of {', '.join(names)}")
    box.select(method)


def _other_film(box: Any, name: Any) -> None:
    """The other film picked by hand (None: the one the dock preselects)."""
    if name is None:
        return
    names = [box.other.itemText(i) for i in range(box.other.count())]
    if name != NO_OTHER and name not in names:
        raise ValueError(f"{name!r}: no such mammogram open beside this film")
    box.other.setCurrentText(name)
