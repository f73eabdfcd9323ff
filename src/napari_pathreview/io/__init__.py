"""Readers and writers: histology, slides, mammograms and ROI annotations (no Qt, no napari).

Public names (see .team/CONTRACTS.md): ``load_image``/``LoadedImage``, ``to_rgb_uint8``,
``parse_breakhis_name``/``BreakhisInfo``, ``read_mias_info``/``MiasAnnotation``/
``mias_image_label``, ``read_geojson_rois``/``write_geojson_rois``/``Roi``.
Also: ``layers_for_path`` (the napari LayerData of a file, as the reader builds it),
``rois_to_geojson``/``parse_geojson_rois``/``rois_from_shapes`` (ROIs ↔ GeoJSON dicts,
e.g. a review's ``roi_geojson``), ``label_image_to_rois``, ``write_pyramidal_tiff``,
``contrast_limits``, ``MultiFrameError`` (a stack read without a frame: ``io.frames``);
``open_slide``/``SlideSource`` (whole slides of every format:
regions at any level, µm/px, associated images, a cache fingerprint).
"""

from napari_pathreview.io.breakhis import BREAKHIS_UM_PER_PX, BreakhisInfo, parse_breakhis_name
from napari_pathreview.io.frames import MultiFrameError
from napari_pathreview.io.geojson import (
    Roi,
    parse_geojson_rois,
    read_geojson_rois,
    rois_from_shapes,
    rois_to_geojson,
    write_geojson_rois,
)
from napari_pathreview.io.images import LoadedImage, load_image, to_rgb_uint8
from napari_pathreview.io.labels import label_image_to_rois
from napari_pathreview.io.layers import layers_for_path
from napari_pathreview.io.mammograms import contrast_limits
from napari_pathreview.io.mias import (
    MiasAnnotation,
    find_mias_annotations,
    mias_image_label,
    mias_refnum,
    read_mias_info,
)
from napari_pathreview.io.pyramid import write_pyramidal_tiff
from napari_pathreview.io.wsi import SlideSource, open_slide

__all__ = [
    "BREAKHIS_UM_PER_PX",
    "SlideSource",
    "open_slide",
    "BreakhisInfo",
    "LoadedImage",
    "MiasAnnotation",
    "MultiFrameError",
    "Roi",
    "contrast_limits",
    "find_mias_annotations",
    "label_image_to_rois",
    "layers_for_path",
    "load_image",
    "mias_image_label",
    "mias_refnum",
    "parse_breakhis_name",
    "parse_geojson_rois",
    "read_geojson_rois",
    "read_mias_info",
    "rois_from_shapes",
    "rois_to_geojson",
    "to_rgb_uint8",
    "write_geojson_rois",
    "write_pyramidal_tiff",
]
