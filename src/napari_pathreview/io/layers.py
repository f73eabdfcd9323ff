"""napari LayerData tuples for every file the plugin opens (pure data: no napari import).

``layers_for_path`` is what the napari reader, the sample-data contributions and the demo
call, so a file looks the same however it is opened. Each layer's metadata carries
``metadata["pathreview"] = {"modality", "source_path", ...file facts}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io.folders import holds_dicom
from napari_pathreview.io.frames import ALL_FRAMES
from napari_pathreview.io.geojson import Roi, read_geojson
from napari_pathreview.io.images import HISTOLOGY, IMAGE_SUFFIXES, LoadedImage, load_image
from napari_pathreview.io.mammograms import contrast_limits
from napari_pathreview.io.mias import (
    MIAS_MM_PER_PX,
    MIAS_SIZE,
    MiasAnnotation,
    film_circle,
    find_mias_annotations,
    mias_refnum,
    read_mias_info,
)
from napari_pathreview.io.roi_placement import frameless_placement
from napari_pathreview.io.shape_holes import carry_holes

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]

SEVERITY_COLOURS = {"M": "red", "B": "yellow", None: "cyan"}
GEOJSON_SUFFIXES = frozenset({".geojson", ".json"})


def is_mias_info(path: str | Path) -> bool:
    """True for a MIAS annotation table named ``Info.txt`` (any case)."""
    return Path(str(path)).name.lower() == "info.txt"


def looks_like_geojson(path: str | Path) -> bool:
    """Cheap check that a .json/.geojson file is GeoJSON: reads its first 4 KiB only."""
    path = Path(str(path))
    if path.suffix.lower() == ".geojson":
        return True
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with open(path, "rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace")
    return '"type"' in head and ("Feature" in head or "Polygon" in head)


def can_read(path: str | Path) -> bool:
    """True for what this plugin opens: images, slides, Info.txt, GeoJSON, folders of DICOM
    files (films, whole-slide series: ``io.folders``)."""
    suffix = Path(str(path)).suffix.lower()
    if Path(str(path)).is_dir():
        return holds_dicom(path)
    return suffix in IMAGE_SUFFIXES or is_mias_info(path) or looks_like_geojson(path)


def image_layer(loaded: LoadedImage, name: str | None = None) -> LayerData:
    """The image layer of a loaded image: RGB histology, or gray with percentile limits.

    The scale is physical where the file says so (µm for histology, mm for DICOM
    mammograms) and the layer's ``units`` name it, so napari's scale bar reads µm or mm.
    A stack of frames is one 3-D layer, frames first (napari gives it a slider; colour frames
    stay RGB), its frame axis physical where the file states the spacing, else one step per
    frame.
    """
    kwargs: dict[str, Any] = {
        "name": name or loaded.name,
        **loaded.layer_frame,
        "metadata": {"pathreview": dict(loaded.metadata)},
    }
    if loaded.frames > 1:
        kwargs.update(_stack_frame(loaded))
    if loaded.multiscale:
        kwargs["multiscale"] = True
    if loaded.modality == HISTOLOGY:
        kwargs["rgb"] = True
    else:
        kwargs.update(
            rgb=False, colormap="gray", contrast_limits=contrast_limits(loaded.levels[-1])
        )
    data = loaded.levels if loaded.multiscale else loaded.data
    return data, kwargs, "image"


def _stack_frame(loaded: LoadedImage) -> dict[str, Any]:
    """``scale`` (and ``units``) of a stack's 3-D layer: the frame axis, then the frames'.

    The frame step is in the frames' own unit (µm for histology, else mm), so the stack's
    proportions are physical in all three axes."""
    spacing = loaded.frame_spacing_mm
    in_um = loaded.scale_unit == "µm"
    step = spacing * (1000.0 if in_um else 1.0) if spacing else 1.0
    frame: dict[str, Any] = {"scale": (step, *loaded.scale)}
    units = loaded.layer_frame.get("units")
    if units or spacing:
        frame["units"] = (
            ("um" if in_um else "mm") if spacing else "pixel",
            *(units or ("pixel",) * 2),
        )
    return frame


def _circle_corners(row: float, col: float, r_radius: float, c_radius: float) -> np.ndarray:
    return np.array(
        [
            [row - r_radius, col - c_radius],
            [row - r_radius, col + c_radius],
            [row + r_radius, col + c_radius],
            [row + r_radius, col - c_radius],
        ]
    )


def mias_roi_layer(
    annotations: Sequence[MiasAnnotation],
    name: str,
    image_shape: tuple[int, int] = (MIAS_SIZE, MIAS_SIZE),
    scale: tuple[float, float] = (1.0, 1.0),
    source: str = "",
) -> LayerData | None:
    """Ellipses for the MIAS annotations that have a centre (row = 1024 - y, col = x).

    Coordinates are rescaled when the image is not 1024×1024 (a downscaled copy), so the
    circle lands on the same tissue. Returns None when no annotation can be drawn.
    """
    drawable = [a for a in annotations if a.has_roi]
    if not drawable:
        return None
    row_factor = image_shape[0] / MIAS_SIZE
    shapes = [_circle_corners(*film_circle(a, image_shape)) for a in drawable]  # the one rule
    features = {
        "refnum": [a.refnum for a in drawable],
        "class": [a.abnormality for a in drawable],
        "severity": [a.severity or "" for a in drawable],
        "tissue": [a.tissue for a in drawable],
    }
    kwargs = {
        "name": name,
        "shape_type": ["ellipse"] * len(shapes),
        "features": features,
        "edge_color": [SEVERITY_COLOURS.get(a.severity, "cyan") for a in drawable],
        "face_color": "transparent",
        "edge_width": max(2.0, 4.0 * row_factor),
        "scale": scale,
        **({"units": ("mm", "mm")} if tuple(scale) != (1.0, 1.0) else {}),
        "text": {"string": "{class} {severity}", "color": "white", "anchor": "upper_left"},
        "metadata": {
            "pathreview": {
                "modality": "mammogram",
                "kind": "roi",
                "dataset": "MIAS",
                "source_path": source,
            }
        },
    }
    return shapes, kwargs, "shapes"


def roi_shapes_layer(rois: Sequence[Roi], name: str, source: str = "") -> LayerData:
    """A Shapes layer of GeoJSON ROIs; property keys become feature columns.

    Polygon holes travel with the layer (``io.shape_holes``): napari does not draw them, but
    the Analyze dock's IoU, the writer and the review ROI honour them.
    """
    keys = sorted({key for roi in rois for key in roi.properties})
    features = {key: [_feature_value(roi.properties.get(key)) for roi in rois] for key in keys}
    kwargs = {
        "name": name,
        "shape_type": [roi.shape_type for roi in rois],
        "features": features,
        "face_color": "transparent",
        "edge_color": "lime",
        "edge_width": 3,
        "metadata": {"pathreview": {"modality": None, "kind": "roi", "source_path": source}},
    }
    data = [np.asarray(roi.data, dtype=float) for roi in rois]
    return data, carry_holes(kwargs, rois), "shapes"


def _feature_value(value: Any) -> Any:
    return "" if value is None else value if isinstance(value, (int, float, bool)) else str(value)


def associated_layers(
    loaded: LoadedImage, names: Sequence[str] = ("macro", "thumbnail")
) -> list[LayerData]:
    """Hidden image layers of a slide's associated images (label, macro, thumbnail).

    Only the names asked for are read. The label can show patient identifiers, so it is
    never among the defaults and, like the others, is added hidden.
    """
    if loaded.slide is None:
        return []
    available = loaded.slide.associated_images
    stem = (loaded.path or Path("slide")).stem
    layers = []
    for name in names:
        if name in available:
            kwargs = {
                "name": f"{stem} [{name}]",
                "rgb": True,
                "visible": False,
                "metadata": {
                    "pathreview": {
                        "modality": HISTOLOGY,
                        "kind": "associated",
                        "associated": name,
                        "source_path": loaded.metadata.get("source_path", ""),
                    }
                },
            }
            layers.append((available[name], kwargs, "image"))
    return layers


def _image_layers(
    path: Path, um_per_px: float | None = None, associated: Sequence[str] = ()
) -> list[LayerData]:
    loaded = load_image(path, um_per_px=um_per_px, frame=ALL_FRAMES)
    if loaded.modality == HISTOLOGY and loaded.slide is not None and not loaded.um_per_px:
        logger.warning(
            "%s: the file does not state its pixel size; the slide opens in pixels (the "
            "scale bar counts pixels). Give it with load_image(path, um_per_px=...) or "
            "`pathreview predict-slides --slide-um-per-px`",
            path,
        )
    layers = [image_layer(loaded), *associated_layers(loaded, associated)]
    annotations = find_mias_annotations(path) if mias_refnum(path) else None
    if annotations:
        roi = film_roi_layer(annotations, f"{path.stem} ROI", loaded, str(path.resolve()))
        if roi is not None:
            layers.append(roi)
    return layers


def film_roi_layer(
    annotations: Sequence[MiasAnnotation], name: str, film: LoadedImage, source: str
) -> LayerData | None:
    """The MIAS circles of ``film`` on it as the reader opened it: in its pixels (a resized
    copy's, :func:`mias_roi_layer`) at its scale and units (``_core.file_scale``: a 256² copy
    at 0.8 mm), so each lands on its lesion whatever size the film was saved at."""
    first = 1 if film.frames > 1 else 0  # a stack's frames: its frames' rows and columns
    rows, cols = (int(n) for n in film.data.shape[first : first + 2])
    layer = mias_roi_layer(annotations, name, (rows, cols), source=source)
    if layer is None:
        return None
    data, kwargs, kind = layer
    return data, {**kwargs, **film.layer_frame}, kind


FILM_SCALE = (MIAS_MM_PER_PX, MIAS_MM_PER_PX)
"""Info.txt coordinates are pixels of the 1024² films, which open at 0.2 mm per pixel."""


def _films_beside(path: Path) -> dict[str, Path]:
    """Each MIAS reference with an image in ``path``'s folder → its first such file."""
    films: dict[str, Path] = {}
    for image in sorted(path.parent.iterdir()):
        refnum = mias_refnum(image)
        if refnum and image.suffix.lower() in IMAGE_SUFFIXES:
            films.setdefault(refnum, image)
    return films


def _info_roi_layer(
    annotations: Sequence[MiasAnnotation], refnum: str, film: Path, source: str
) -> LayerData | None:
    """``refnum``'s circles on its film beside the Info.txt, as the film opens (its size and
    scale); a film that cannot be read gets them at the 1024² films' 0.2 mm, and a warning."""
    rows = [a for a in annotations if a.refnum == refnum]
    if not any(a.has_roi for a in rows):
        return None
    try:
        loaded = load_image(film, frame=ALL_FRAMES)
    except ImageReadError as error:
        logger.warning("%s; its ROIs are drawn for a 1024² film at 0.2 mm per pixel", error)
        return mias_roi_layer(rows, f"{refnum} ROI", scale=FILM_SCALE, source=source)
    return film_roi_layer(rows, f"{refnum} ROI", loaded, source)


def _info_layers(path: Path) -> list[LayerData]:
    annotations = read_mias_info(path)
    present = _films_beside(path)
    source = str(path.resolve())
    layers = []
    for refnum, film in present.items():
        roi = _info_roi_layer(annotations, refnum, film, source)
        if roi is not None:
            layers.append(roi)
    if not present:
        roi = mias_roi_layer(
            annotations, f"{path.stem} ROIs (all images)", scale=FILM_SCALE, source=source
        )
        layers = [roi] if roi is not None else []
    if not layers:
        raise ImageReadError(f"{path}: no annotation with a centre and radius to draw")
    return layers


def _geojson_layer(path: Path, rois: Sequence[Roi], frame: dict[str, Any]) -> LayerData:
    """The Shapes layer of a GeoJSON: where it was drawn if it says so (our own files),
    else on the image of the same name beside it (QuPath exports; see ``roi_placement``)."""
    data, kwargs, kind = roi_shapes_layer(rois, path.stem, str(path.resolve()))
    facts: dict[str, Any] = {"frame_from": "file"}
    if not frame:
        frame, facts = frameless_placement(path, rois)
    kwargs["metadata"]["pathreview"].update(facts)
    return data, {**kwargs, **frame}, kind


def layers_for_path(
    path: str | Path, *, um_per_px: float | None = None, associated: Sequence[str] = ()
) -> list[LayerData]:
    """All layers one file produces.

    Images give an image layer (plus the MIAS ROI layer when an ``Info.txt`` beside a
    ``mdbNNN`` image lists it); ``Info.txt`` gives Shapes layers of ellipses; GeoJSON gives
    one Shapes layer.

    Args:
        path: The file (or DICOM WSI folder).
        um_per_px: Level-0 pixel size for histology whose file does not state it.
        associated: Slide associated images to add as hidden layers ("label", "macro",
            "thumbnail"); none by default.

    Raises:
        ImageReadError: The file cannot be read; the message says why.
    """
    path = Path(path)
    if is_mias_info(path):
        return _info_layers(path)
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        rois, frame = read_geojson(path)
        if not rois:
            raise ImageReadError(f"{path}: no polygon or line ROI in this GeoJSON file")
        return [_geojson_layer(path, rois, frame)]
    return _image_layers(path, um_per_px, associated)
