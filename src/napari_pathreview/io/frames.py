"""Multi-frame images (tomosynthesis, a stack of film frames, a colour z-stack): whole in the
viewer, one frame at a time for a model.

A radiologist scrolls the whole stack, so the reader gives napari a 3-D layer (frames first,
a slider). The models are 2-D: classifying a stack by its first frame would answer a question
nobody asked, so analysis refuses a stack unless it is told which frame to read
(:func:`choose_frame`). Frames count from 0, as napari's frame slider numbers them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.io.tiff_axes import frame_total

ALL_FRAMES = "all"
"""``load_image(path, frame=ALL_FRAMES)``: the whole stack (what the viewer shows)."""


class MultiFrameError(ImageReadError):
    """A stack was asked for as one 2-D image without saying which frame."""

    def __init__(self, path: object, frames: int) -> None:
        self.path, self.frames = path, frames
        super().__init__(
            f"{path} holds {frames} frames (a multi-frame stack such as tomosynthesis); a 2-D "
            "model reads one image and will not guess which: choose one with "
            f"`pathreview predict --frame K` (K from 0 to {frames - 1}, as napari's frame "
            "slider counts) or load_image(path, frame=K)"
        )


def frame_count(series: Any) -> int:
    """How many frames a TIFF series' frame axes (pages, depth, time, channels that are not
    one colour image: :func:`.tiff_axes.axis_roles`) number together."""
    return frame_total(series.axes, series.shape)


def stack_name(stem: str, frames: int) -> str:
    """A stack's layer name: its file (or folder item) name and how many frames it holds."""
    return f"{stem} [{frames} frames]"


def frame_spacing_mm(ds: Any) -> float | None:
    """Distance between a DICOM stack's frames (mm): ``SpacingBetweenSlices``, else
    ``SliceThickness``, at the top level or in the enhanced objects' shared pixel measures."""
    places = [ds]
    for group in getattr(ds, "SharedFunctionalGroupsSequence", None) or []:
        places.extend(getattr(group, "PixelMeasuresSequence", None) or [])
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        for place in places:
            value = getattr(place, keyword, None)
            try:
                spacing = abs(float(value)) if value not in (None, "") else 0.0
            except (TypeError, ValueError):
                continue
            if spacing > 0:
                return spacing
    return None


def pixel_measures(ds: Any) -> Any:
    """The enhanced objects' shared ``PixelMeasuresSequence`` item (``PixelSpacing`` lives there
    rather than at the top level), else None."""
    for group in getattr(ds, "SharedFunctionalGroupsSequence", None) or []:
        for item in getattr(group, "PixelMeasuresSequence", None) or []:
            return item
    return None


def _states_voi(item: Any) -> bool:
    """Whether a dataset (or functional-group item) states a window or a VOI LUT."""
    has_window = "WindowCenter" in item and "WindowWidth" in item
    return has_window or bool(item.get("VOILUTSequence"))


def _states_rescale(item: Any) -> bool:
    """Whether a dataset (or functional-group item) states a modality LUT or rescale."""
    has_rescale = "RescaleSlope" in item and "RescaleIntercept" in item
    return has_rescale or bool(item.get("ModalityLUTSequence"))


def _frame_place(
    ds: Any, index: int, sequence: str, states: Callable[[Any], bool]
) -> tuple[str, Any] | None:
    """The first item of ``sequence`` that ``states`` accepts: in frame ``index``'s per-frame
    functional group, else the shared group, else the top level (``ds`` itself)."""
    places = (("per-frame", "PerFrameFunctionalGroupsSequence", index),)
    places += (("shared", "SharedFunctionalGroupsSequence", 0),)
    for source, keyword, at in places:
        groups = getattr(ds, keyword, None) or []
        if len(groups) > at:
            for item in getattr(groups[at], sequence, None) or []:
                if states(item):
                    return source, item
    return ("top-level", ds) if states(ds) else None


def frame_voi(ds: Any, index: int) -> tuple[str, Any] | None:
    """Where frame ``index`` of a DICOM states its VOI (window or VOI LUT), and the item that
    holds it: the frame's own ``FrameVOILUTSequence`` (per-frame functional groups), else the
    shared groups', else the top level; None when nowhere. One rule for every frame, so the
    viewer's stack and ``load_image(frame=K)`` window frame K alike.

    Returns:
        ("per-frame" | "shared" | "top-level", the dataset or item holding the VOI), or None.
    """
    return _frame_place(ds, index, "FrameVOILUTSequence", _states_voi)


def frame_rescale(ds: Any, index: int) -> tuple[str, Any] | None:
    """Where frame ``index`` of a DICOM states its modality LUT (rescale slope and intercept,
    which an enhanced object may give each frame), by :func:`frame_voi`'s rule: the frame's
    own ``PixelValueTransformationSequence``, else the shared groups', else the top level;
    None when nowhere (the stored values are the values).

    Returns:
        ("per-frame" | "shared" | "top-level", the dataset or item holding it), or None.
    """
    return _frame_place(ds, index, "PixelValueTransformationSequence", _states_rescale)


def frame_problem(path: object, frames: int, frame: object) -> str | None:
    """Why ``frame`` is not a frame of ``path``'s stack of ``frames`` (None: it is, or the file
    is a single image, which is read as it is whatever ``frame`` says)."""
    if frames <= 1:
        return None
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < frames:
        return f"{path}: frame {frame!r} is not one of its {frames} frames (0 to {frames - 1})"
    return None


def choose_frame(loaded: Any, frame: int | str | None) -> Any:
    """The image analysis reads: ``loaded`` itself, or frame ``frame`` of a stack.

    Args:
        loaded: A ``LoadedImage``.
        frame: None (a single-frame image; a stack is refused), an index counted from 0
            (a single-frame image is read as it is), or ``ALL_FRAMES`` (the stack whole).

    Raises:
        MultiFrameError: ``loaded`` is a stack and ``frame`` is None.
        InvalidInputError: ``frame`` is not a frame of the stack.
    """
    if frame == ALL_FRAMES or loaded.frames == 1:
        return loaded
    if frame is None:
        raise MultiFrameError(loaded.path, loaded.frames)
    problem = frame_problem(loaded.path, loaded.frames, frame)
    if problem:
        raise InvalidInputError(problem)
    levels = [level[frame] for level in loaded.levels]
    metadata = {**loaded.metadata, "frame": frame}
    windows = metadata.pop("frame_windows", None)  # a DICOM's per-frame windows: this one's
    if windows and windows[frame]:
        metadata["window_center"], metadata["window_width"] = windows[frame]
    return dataclasses.replace(
        loaded, data=levels[0], levels=levels, metadata=metadata, frames=1, frame_spacing_mm=None
    )
