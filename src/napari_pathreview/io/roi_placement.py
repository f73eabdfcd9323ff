"""Where a GeoJSON without our frame lands: on the image of the same name beside it.

QuPath exports vertices in pixels of the full-resolution image and says nothing about the
pixel size, so over a µm- or mm-scaled image such a file drawn at scale 1 would sit, hundreds
of times too small, in the image's corner. The napari reader gets only the file's path, so
the image is found by name, as QuPath's export names the file (the image name without its
extension + ``.geojson``). Names are compared case-insensitively; the first match wins:

1. ``NAME.EXT.geojson`` → the image ``NAME.EXT`` (``slide.svs.geojson`` → ``slide.svs``);
2. ``NAME.geojson`` → ``NAME`` + an image suffix, in ``SIBLING_SUFFIXES`` order (whole-slide
   formats, then DICOM, then PNG/JPEG...), or the DICOM WSI folder ``NAME``;
3. the same with an annotation tail dropped (``ANNOTATION_TAILS``: ``slide_annotations``).

The image is opened with :func:`.images.load_image` and the ROIs take its ``layer_frame``:
the scale and units its image layer gets. A file that carries ``geojson.FRAME_KEY`` keeps
that frame and is not matched. When no image is found or it cannot be read, the ROIs stay in
pixels (scale 1) and a note says so and what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io._core import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    RASTER_SUFFIXES,
    SLIDE_SUFFIXES,
    TIFF_SUFFIXES,
)
from napari_pathreview.io.dicom_slide import is_dicom_wsi_folder
from napari_pathreview.io.frames import ALL_FRAMES
from napari_pathreview.io.geojson import Roi
from napari_pathreview.io.images import load_image
from napari_pathreview.io.pixel_origin import centre_to_corner

logger = logging.getLogger(__name__)

ANNOTATION_TAILS = ("_annotations", "-annotations", "_annotation", "-annotation")
"""Endings of a GeoJSON name dropped to find its image (``slide_annotations.geojson``)."""

SIBLING_SUFFIXES: tuple[str, ...] = (
    *sorted(SLIDE_SUFFIXES),
    *sorted(".ome" + suffix for suffix in TIFF_SUFFIXES if suffix != ".svs"),
    *sorted(DICOM_SUFFIXES),
    *sorted(RASTER_SUFFIXES),
)
"""Suffixes tried after ``NAME``, in this order: whole slides first, then DICOM, then rasters."""

_EDGE_SLACK_PX = 2.0  # QuPath closes outlines on the image's far edge (x == width)


def _candidate_names(geojson: Path) -> list[str]:
    """Lower-case names of the images (or DICOM WSI folder) ``geojson`` may belong to."""
    stem = geojson.stem.lower()
    bases = [stem] + [
        stem[: -len(tail)] for tail in ANNOTATION_TAILS if stem.endswith(tail) and stem != tail
    ]
    names: list[str] = []
    for base in bases:
        if Path(base).suffix in IMAGE_SUFFIXES:
            names.append(base)
        names.extend(base + suffix for suffix in SIBLING_SUFFIXES)
        names.append(base)  # a DICOM WSI folder
    return list(dict.fromkeys(names))


def sibling_image(geojson: str | Path) -> Path | None:
    """The image in the GeoJSON's folder that it belongs to by name (module rule), or None."""
    geojson = Path(geojson)
    try:
        entries = {entry.name.lower(): entry for entry in geojson.parent.iterdir()}
    except OSError:
        return None
    matches = [
        entries[name]
        for name in _candidate_names(geojson)
        if name in entries
        and (
            entries[name].is_file()
            if Path(name).suffix in IMAGE_SUFFIXES
            else is_dicom_wsi_folder(entries[name])
        )
    ]
    if len(matches) > 1:
        logger.info("%s: several images match %s; using %s", geojson, matches, matches[0].name)
    return matches[0] if matches else None


def _reach_beyond(rois: Sequence[Roi], shape: tuple[int, int]) -> tuple[float, float] | None:
    """The farthest (x, y) of the ROIs, as the file gives it, when it lies outside an image of
    ``shape`` (rows, cols)."""
    points = np.concatenate([np.asarray(roi.data, float)[:, -2:] for roi in rois])
    far_row, far_col = centre_to_corner(points.max(axis=0))
    if far_row > shape[0] + _EDGE_SLACK_PX or far_col > shape[1] + _EDGE_SLACK_PX:
        return float(far_col), float(far_row)
    return None


def frameless_placement(
    geojson: Path, rois: Sequence[Roi]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Layer kwargs (``scale``/``units``) and metadata facts for a GeoJSON without a frame.

    Returns:
        ``(frame, facts)``: the sibling image's ``layer_frame`` (``{}`` when none), and
        ``frame_from`` ("image" or "pixels"), ``image``/``image_path`` of the image used,
        and ``frame_note``, a warning for the user, when the placement is doubtful.
    """
    image = sibling_image(geojson)
    if image is None:
        note = (
            f"{geojson.name} has no pixel size and no image of the same name beside it, so "
            "its ROIs open in image pixels (scale 1) and will not line up with a µm- or "
            f"mm-scaled image. Put it next to its image, named like it ({geojson.stem}.svs "
            f"or {geojson.stem}.tif beside {geojson.name}, or slide.svs.geojson beside "
            "slide.svs), and open it again; or set this layer's scale to the image layer's."
        )
        logger.warning(note)
        return {}, {"frame_from": "pixels", "frame_note": note}
    try:
        loaded = load_image(image, frame=ALL_FRAMES)  # a stack's frames share one frame
    except ImageReadError as error:
        note = (
            f"{geojson.name}: its image {image.name} cannot be read ({error}), so the ROIs "
            "open in image pixels (scale 1)."
        )
        logger.warning(note)
        return {}, {"frame_from": "pixels", "frame_note": note}
    if loaded.slide is not None:
        loaded.slide.close()  # only its pixel size was needed
    facts: dict[str, Any] = {
        "frame_from": "image",
        "image": loaded.name,
        "image_path": str(image.resolve()),
    }
    beyond = _reach_beyond(rois, tuple(int(n) for n in loaded.data.shape[:2]))
    if beyond is not None:
        height, width = loaded.data.shape[:2]
        facts["frame_note"] = (
            f"{geojson.name}: ROIs reach x={beyond[0]:g}, y={beyond[1]:g}, outside "
            f"{image.name} ({width}×{height} px); placed on it anyway — were they drawn on "
            "another image or a resized copy?"
        )
        logger.warning(facts["frame_note"])
    logger.info("%s: ROIs placed on %s (scale %s)", geojson, image, loaded.scale)
    return loaded.layer_frame, facts
