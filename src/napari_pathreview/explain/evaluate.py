"""Scoring CAM methods against ROIs: one image (``explain``) or a MIAS folder (seed 004's Table 6).

The per-image scores follow :mod:`napari_pathreview.explain.metrics`; the summary is the mean
and sample standard deviation of IoU, Dice, pointing game and energy-in-ROI per method over
every image that has at least one ROI circle.
"""

from __future__ import annotations

import csv
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.explain.masks import mask_from_mias, mask_from_rois, require_nonempty
from napari_pathreview.explain.metrics import cam_is_empty, roi_scores

__all__ = [
    "MethodSummary",
    "empty_maps_note",
    "find_mias_cases",
    "iter_evaluate_mias",
    "roi_mask_from_geojson",
    "roi_mask_from_mias",
    "score_methods",
    "scored_map",
    "summarize",
    "write_summary_csv",
]

logger = logging.getLogger(__name__)

SCORES: tuple[str, ...] = ("iou", "dice", "pointing", "energy")
_AREA = ("polygon", "rectangle", "ellipse")


@dataclass(frozen=True)
class MethodSummary:
    """Mean ± sample sd of each score for one CAM method over ``n`` images.

    ``n_cam_empty`` of them had a constant CAM (see :func:`cam_is_empty`): they count as 0 in
    the means, as seed 004's protocol has it, and are counted so a low mean can be read.
    """

    method: str
    n: int
    mean: dict[str, float]
    sd: dict[str, float]
    n_cam_empty: int = 0

    def row(self) -> dict[str, Any]:
        """One CSV row: method, n, n_cam_empty, then ``<score>_mean`` and ``<score>_sd``."""
        out: dict[str, Any] = {"method": self.method, "n": self.n, "n_cam_empty": self.n_cam_empty}
        for name in SCORES:
            out[f"{name}_mean"] = round(self.mean[name], 6)
            out[f"{name}_sd"] = round(self.sd[name], 6)
        return out


def roi_mask_from_geojson(path: str | Path, image_shape: Sequence[int]) -> np.ndarray:
    """The union of the area ROIs (polygons, rectangles, ellipses) of a GeoJSON file, their
    holes cut out (``explain.masks.mask_from_rois``).

    Raises:
        InvalidInputError: the file holds no area ROI (only points or lines), or one that
            cannot be drawn (named by file and feature).
    """
    from napari_pathreview.io import read_geojson_rois

    rois = [r for r in read_geojson_rois(path) if r.shape_type in _AREA]
    if not rois:
        raise InvalidInputError(f"{path} holds no polygon, rectangle or ellipse ROI")
    return require_nonempty(mask_from_rois(rois, image_shape), path)


def roi_mask_from_mias(
    info: str | Path, image_path: str | Path, image_shape: Sequence[int]
) -> np.ndarray:
    """The ROI circles of one MIAS image (by its file name, e.g. mdb028.pgm) from Info.txt.

    Raises:
        InvalidInputError: the file name is not a MIAS reference, or the image has no circle.
    """
    from napari_pathreview.io import mias_refnum, read_mias_info

    refnum = mias_refnum(image_path)
    if refnum is None:
        raise InvalidInputError(f"{Path(image_path).name} is not a MIAS image name (mdbNNN)")
    rows = [a for a in read_mias_info(info) if a.refnum == refnum and a.has_roi]
    if not rows:
        raise InvalidInputError(f"{refnum} has no ROI circle in {info} (normal or diffuse finding)")
    return require_nonempty(mask_from_mias(rows, image_shape), f"{info} ({refnum})")


def score_methods(
    predictor: Any,
    image: Any,
    mask: np.ndarray,
    methods: Sequence[str],
    threshold: float = 0.5,
    target_class: int | str | None = None,
    tta: str = "none",
    **cam_options: Any,
) -> list[dict[str, Any]]:
    """IoU, Dice, pointing game and energy-in-ROI of each method's CAM for one image.

    Returns:
        One dict per method: method, target (class name), iou, dice, pointing, energy, and
        cam_empty (True when the CAM is constant: its zeros say "no map", not "missed").
    """
    rows = []
    for method in methods:
        result = predictor.explain(image, method, target_class=target_class, tta=tta, **cam_options)
        scores = scored_map(result.cam, mask, threshold)
        rows.append({"method": result.method, "target": result.target_label, **scores})
    return rows


def scored_map(cam: np.ndarray, mask: np.ndarray, threshold: float) -> dict[str, Any]:
    """:func:`roi_scores` of one map plus ``cam_empty``, the row every explain output writes."""
    return {**roi_scores(cam, mask, threshold), "cam_empty": cam_is_empty(cam)}


def empty_maps_note(name: str, empty: int, total: int) -> str | None:
    """The warning a run logs when ``empty`` of the ``total`` maps ``name`` scored came out
    constant (``cam_is_empty``), else None: their zeros are no evidence of a miss."""
    if not empty:
        return None
    return f"{name} is empty (constant: no localisation) on {empty} of {total} images: they score 0"


def find_mias_cases(folder: str | Path) -> list[tuple[Path, list[Any]]]:
    """(image path, ROI rows) for every image of a MIAS folder with at least one ROI circle.

    The folder needs an ``Info.txt`` (or a MIAS ``labels.csv``) beside images named
    ``mdbNNN.<pgm|png|...>``.

    Raises:
        InvalidInputError: no annotation file, or no annotated image found.
    """
    from napari_pathreview.io import read_mias_info
    from napari_pathreview.io.images import is_supported_image

    folder = Path(folder)
    info = next(
        (folder / n for n in ("Info.txt", "info.txt", "labels.csv") if (folder / n).is_file()), None
    )
    if info is None:
        raise InvalidInputError(f"{folder} has no Info.txt or labels.csv with MIAS annotations")
    by_ref: dict[str, list[Any]] = {}
    for row in read_mias_info(info):
        if row.has_roi:
            by_ref.setdefault(row.refnum, []).append(row)
    images = {p.stem.lower(): p for p in sorted(folder.iterdir()) if is_supported_image(p)}
    cases = [(images[ref], rows) for ref, rows in sorted(by_ref.items()) if ref in images]
    if not cases:
        raise InvalidInputError(f"no image in {folder} has an ROI circle in {info.name}")
    return cases


def iter_evaluate_mias(
    predictor: Any,
    folder: str | Path,
    methods: Sequence[str],
    threshold: float = 0.5,
    limit: int | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """Per-image, per-method score rows over a MIAS folder (a generator; honours ``cancel``)."""
    from napari_pathreview.io import load_image

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInputError(f"limit must be a whole number >= 1 (or None for all), got {limit}")
    cases = find_mias_cases(folder)[:limit]
    for index, (path, rows) in enumerate(cases, start=1):
        if cancel is not None and cancel.is_set():
            return
        image = load_image(path)
        mask = require_nonempty(mask_from_mias(rows, image.data.shape[:2]), path)
        logger.info("evaluate-cam %d/%d: %s", index, len(cases), path.name)
        for row in score_methods(predictor, image, mask, methods, threshold, **options):
            yield {"image": path.name, **row}


def summarize(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[MethodSummary]:
    """Mean and sample sd (ddof=1; 0 for one image) of each score per method."""
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        values = {s: np.array([r[s] for r in mine], float) for s in SCORES}
        mean = {s: float(v.mean()) if v.size else float("nan") for s, v in values.items()}
        sd = {s: float(v.std(ddof=1)) if v.size > 1 else 0.0 for s, v in values.items()}
        empty = sum(bool(r.get("cam_empty")) for r in mine)
        out.append(MethodSummary(method, len(mine), mean, sd, empty))
    return out


def write_summary_csv(path: str | Path, summaries: Sequence[MethodSummary]) -> Path:
    """The summary table as CSV (``method, n, iou_mean, iou_sd, ...``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [s.row() for s in summaries]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["method", "n"])
        writer.writeheader()
        writer.writerows(rows)
    return path
