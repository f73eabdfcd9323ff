"""The Analyze dock's settings in a saved session: what the reader set, and put back one key
at a time through the checks a typed value meets.

Every setting the dock offers is kept (model, TTA, device, CAM and its target, tiling mode, the
advanced slide settings, stain method and target, ROI, threshold, opacity, auto-run, the other
film), so a restored workspace runs as it did. A key a session lacks (saved before it was kept)
leaves the dock's default; a value the dock would refuse (an unknown TTA, a min tissue of 1.5)
is left as the dock holds it and named, with its key and why, in one warning naming the session
file, while the other keys are restored (:class:`SkippedSettings`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from napari_pathreview.errors import PathReviewError
from napari_pathreview.widgets._two_film_box import NO_OTHER

#: What one key's restore may raise: a user error or a widget refusing the value.
REFUSED = (PathReviewError, ValueError, TypeError, KeyError)


class SkippedSettings:
    """The keys of a session that were not restored, each with why."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def put(self, key: str, section: Mapping[str, Any], name: str, apply: Callable) -> None:
        """``apply(section[name])`` unless the session lacks ``name``; a refusal is noted
        under ``key`` (the dotted path in the file) instead of stopping the restore."""
        if name not in section:
            return
        try:
            apply(section[name])
        except REFUSED as error:
            reason = str(error.args[0]) if isinstance(error, KeyError) and error.args else error
            self.problems.append(f"{key}: {reason}")

    def message(self, path: Any) -> str:
        """The warning shown after a restore: the session file and every key left out."""
        return (
            f"{path}: {len(self.problems)} saved setting(s) not restored (left as the dock "
            "holds them; the rest is restored): " + "; ".join(self.problems)
        )


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, got {value!r}")
    return value


def _number(value: Any) -> float:
    """A number for a slider (the slider refuses one out of its range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"must be a number, got {value!r}")
    return float(value)


def _setter(widget: Any, check: Callable[[Any], Any] = lambda v: v) -> Callable[[Any], None]:
    def apply(value: Any) -> None:
        widget.value = check(value)

    return apply


def _chosen(combo: Any, what: str) -> Callable[[Any], None]:
    """Pick a layer or model by name; None (nothing was chosen) leaves the picker as it is."""

    def apply(value: Any) -> None:
        if value is None:
            return
        if value not in combo.choices:
            raise ValueError(f"{value!r}: no such {what} here")
        combo.value = value

    return apply


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
    put("all_models", _setter(analyze.all_models, _boolean))
    for name, widget in (("qc", analyze.qc), ("auto_run", analyze.auto_run)):
        put(name, _setter(widget, _boolean))
    for name, widget in (("threshold", analyze.threshold), ("opacity", analyze.opacity)):
        put(name, _setter(widget, _number))
    put("device", _setter(analyze.device))
    put("image", _chosen(analyze.image_combo, "image layer"))
    put("model", _chosen(analyze.model_combo, "registered model for this image"))
    # after the model, whose card sets its own TTA and offers its own CAMs and classes
    for name, widget in (
        ("tta", analyze.tta),
        ("cam", analyze.cam_method),
        ("target_class", analyze.target_class),
    ):
        put(name, _setter(widget))
    put("stain_target", lambda state: _stain_target(analyze, state))
    put("stain", lambda method: _stain(analyze.stain_box, method))
    put("roi", _chosen(analyze.roi_combo, "ROI layer"))
    put("other_film", lambda name: _other_film(analyze.two_film, name))
    slide = settings.get("slide")
    if not isinstance(slide, Mapping):
        put("slide", lambda value: _not_an_object(value, slide is None))
        return
    skipped.put("analyze.slide.mode", slide, "mode", _setter(analyze.slide_mode))
    for name in ("model_um_per_px", "min_tissue", "tissue"):
        skipped.put(f"analyze.slide.{name}", slide, name, _slide_field(analyze.slide_box, name))


def _not_an_object(value: Any, missing: bool) -> None:
    if not missing:
        raise TypeError(f"must be an object of slide settings, got {value!r}")


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
