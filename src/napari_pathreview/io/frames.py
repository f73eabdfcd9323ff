"""Multi-frame grey images (tomosynthesis, a stack of film frames): whole in the viewer, one
frame at a time for a model.

A radiologist scrolls the whole stack, so the reader gives napari a 3-D layer (frames first,
a slider). The models are 2-D: classifying a stack by its first frame would answer a question
nobody asked, so analysis refuses a stack unless it is told which frame to read
(:func:`choose_frame`). Frames count from 0, as napari's frame slider numbers them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from napari_pathreview.errors import ImageReadError, InvalidInputError

ALL_FRAMES = "all"
"""``load_image(path, frame=ALL_FRAMES)``: the whole stack (what the viewer shows)."""

FRAME_AXES = "IZTQ"
"""tifffile axes that number frames: pages, depth, time, unknown."""


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
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < loaded.frames:
        raise InvalidInputError(
            f"{loaded.path}: frame {frame!r} is not one of its {loaded.frames} frames "
            f"(0 to {loaded.frames - 1})"
        )
    levels = [level[frame] for level in loaded.levels]
    metadata = {**loaded.metadata, "frame": frame}
    return dataclasses.replace(
        loaded, data=levels[0], levels=levels, metadata=metadata, frames=1, frame_spacing_mm=None
    )
