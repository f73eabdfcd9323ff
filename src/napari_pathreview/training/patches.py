"""Patch datasets from regions of interest, at the physical resolution a model is trained at.

A reader's ROI says where the lesion is; a whole image shrunk to 224 px cannot use that. Here
each labelled image is resampled to the recipe's pixel size (e.g. 0.4 mm/px for mammograms), its
ROIs are rasterised into a mask — MIAS circles, GeoJSON polygons/ellipses/rectangles (review
exports, QuPath), napari Labels masks — and patches are drawn:

* positives: centres uniformly inside the ROI mask (the position inside the lesion is the jitter),
  labelled with the image's class;
* negatives: centres in tissue farther than ``margin`` from every ROI, labelled with the
  negative class; a small share from background, so the encoder knows empty film/glass;
* hard negatives: optionally, the negatives a previous model scored highest (its false positives);
* images with a label but no ROI give no patches: they join MIL training as weakly labelled bags.

Quotas are per patient, not per image, so a patient with thousands of candidate patches weighs
as much as one with a small image. Splitting happens before sampling (patients never cross folds).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathreview.breast_region import breast_mask
from napari_pathreview.errors import InvalidInputError

log = logging.getLogger(__name__)
KINDS: tuple[str, ...] = ("positive", "negative", "background", "hard")


class PatchError(InvalidInputError):
    """An ROI cannot be used (empty, outside its image, unreadable); the message names the image."""


@dataclass(frozen=True)
class PatchSampling:
    """How many patches of which kind; sizes are in pixels of the resampled image."""

    patch_size: int = 64
    context: int = 8  # extra pixels around each patch, for random-crop augmentation
    positives_per_image: int = 16
    negatives_per_image: int = 16
    max_per_patient: int = 64
    margin: int = 16  # negatives keep this distance from every ROI
    background_fraction: float = 0.1
    hard_fraction: float = 0.5  # share of negatives taken from a previous model's false positives
    seed: int = 0


@dataclass(frozen=True)
class LesionImage:
    """One labelled image at the training resolution, with its ROI and tissue masks."""

    path: str
    label: int
    patient_id: str
    pixels: np.ndarray  # H×W×3 uint8
    roi_mask: np.ndarray  # H×W bool
    tissue_mask: np.ndarray  # H×W bool
    weight: float = 1.0

    @property
    def has_roi(self) -> bool:
        return bool(self.roi_mask.any())


@dataclass(frozen=True)
class PatchSet:
    """Patches (M×S×S×3, S = patch_size + 2·context) with labels, weights and provenance."""

    pixels: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    image_index: np.ndarray
    kinds: np.ndarray  # index into KINDS
    centres: np.ndarray  # (M, 2) row, col

    def __len__(self) -> int:
        return int(self.labels.size)

    def counts(self) -> dict[str, int]:
        """Patches per kind (for logs and metrics.json)."""
        return {kind: int((self.kinds == i).sum()) for i, kind in enumerate(KINDS)}


# ----- ROIs → masks --------------------------------------------------------------------------
def _segments_cross(ring: np.ndarray) -> bool:
    """Whether two non-adjacent edges of a closed ring intersect (a self-intersecting polygon)."""
    a, b = ring, np.roll(ring, -1, axis=0)
    n = len(ring)
    if n < 4:
        return False
    d = b - a
    for i in range(n - 2):
        j = np.arange(i + 2, n if i else n - 1)
        if not j.size:
            continue
        p, r, q, s = a[i], d[i], a[j], d[j]
        denom = r[0] * s[:, 1] - r[1] * s[:, 0]
        ok = np.abs(denom) > 1e-12
        qp = q - p
        t = np.where(ok, (qp[:, 0] * s[:, 1] - qp[:, 1] * s[:, 0]) / np.where(ok, denom, 1), -1)
        u = np.where(ok, (qp[:, 0] * r[1] - qp[:, 1] * r[0]) / np.where(ok, denom, 1), -1)
        if np.any(ok & (t > 0) & (t < 1) & (u > 0) & (u < 1)):
            return True
    return False


def _polygon_mask(ring: np.ndarray, shape: tuple[int, int], where: str) -> np.ndarray:
    """Rasterise one polygon ring (napari row, col) by the pixel-centre rule every ROI mask
    follows (``explain.masks``); a self-intersecting ring is repaired to the union of its lobes
    (holes of the even-odd fill filled), as QuPath's and shapely's ``make_valid`` would."""
    from scipy.ndimage import binary_fill_holes

    from napari_pathreview.explain.masks import mask_from_shapes

    distinct = np.unique(np.round(ring, 6), axis=0)
    if len(distinct) < 3:
        raise PatchError(f"{where}: empty polygon (fewer than 3 distinct vertices)")
    mask = mask_from_shapes([ring], "polygon", shape)
    if _segments_cross(ring):
        log.warning("%s: self-intersecting polygon repaired to the union of its lobes", where)
        return binary_fill_holes(mask)
    x, y = ring[:, 1], ring[:, 0]
    if 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) < 1e-9:
        raise PatchError(f"{where}: empty polygon (zero area)")
    return mask


WHOLE_IMAGE_MAX_PIXELS = 2**27
"""Largest level (~134 Mpx) a lesion sample decodes whole; a bigger one is a slide to tile."""


def training_level(levels: Sequence, scale: float, where: str) -> tuple[np.ndarray, float]:
    """The coarsest stored level still as fine as the training resolution, and its downsample.

    ROIs (QuPath, the review store) are in level-0 pixels and ``scale`` counts training
    pixels per level-0 pixel, so a pyramid's small level is only a faster source to resample,
    never a different coordinate frame.

    Raises:
        PatchError: That level is larger than ``WHOLE_IMAGE_MAX_PIXELS``.
    """
    width0 = levels[0].shape[1]
    chosen, downsample = levels[0], 1.0
    for level in levels[1:]:
        factor = width0 / level.shape[1]
        if factor * scale <= 1.0 + 1e-6:
            chosen, downsample = level, factor
    rows, cols = chosen.shape[:2]
    if rows * cols > WHOLE_IMAGE_MAX_PIXELS:
        raise PatchError(
            f"{where}: {rows}×{cols} pixels are needed at this pixel size, too many to train "
            "on the whole image; set lesion.pixel_size coarser"
        )
    return np.asarray(chosen), downsample


def rois_mask(
    rois: Sequence,
    shape: tuple[int, int],
    scale: float,
    where: str,
    source_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Union mask of ROIs given in source pixels, at ``shape`` = source shape × ``scale``.

    Pixel centres scale with the image (``io.pixel_origin.resample_centres``), so an ROI
    covers the same tissue at any working pixel size.

    Args:
        rois: circles ``(row, col, radius)`` and/or ``io.geojson.Roi`` shapes (polygon,
            rectangle, ellipse), all in the source image's pixels (napari coordinates: pixel
            ``i`` centred on ``i``).
        shape: (rows, cols) of the resampled image.
        scale: resampled pixels per source pixel.
        where: the image, named in errors and warnings (with an ROI's ``source``, the
            GeoJSON file and feature it was read from, when it has one).
        source_shape: (rows, cols) of the file, named when an ROI lies outside it (else
            estimated from ``shape`` and ``scale``).

    Raises:
        PatchError: an empty polygon or hole, an unsupported shape, or an ROI wholly outside
            the image.
    """
    from napari_pathreview.explain.masks import cut_holes
    from napari_pathreview.io.pixel_origin import resample_centres

    mask = np.zeros(shape, bool)
    for number, roi in enumerate(rois):
        source = getattr(roi, "source", "")  # a GeoJSON ROI's file and feature
        label = f"{where} ROI {number}" + (f" ({source})" if source else "")
        if isinstance(roi, tuple | list) and len(roi) == 3:
            corners, part = _circle_mask(roi, shape, scale, label)
        else:
            corners = np.asarray(getattr(roi, "data", ()), float)[:, -2:]
            part = _shape_mask(roi, resample_centres(corners, scale), shape, label)
        if not part.any():
            size = source_shape or tuple(round(n / scale) for n in shape)
            raise PatchError(f"{label} lies outside the image: {_outside(corners, size)}")
        holes = [resample_centres(np.asarray(h, float), scale) for h in getattr(roi, "holes", ())]
        try:
            mask |= cut_holes(part, holes)  # a circle (a tuple) has none
        except InvalidInputError as error:
            raise PatchError(f"{label}: {error}") from error
    return mask


def _circle_mask(
    circle: Sequence[float], shape: tuple[int, int], scale: float, label: str
) -> tuple[np.ndarray, np.ndarray]:
    """(bounding corners in source pixels, mask) of a circle ``(row, col, radius)``."""
    from napari_pathreview.io.pixel_origin import resample_centres

    row, col, radius = (float(v) for v in circle)
    if radius <= 0:
        raise PatchError(f"{label}: circle radius must be positive, got {circle[2]}")
    corners = np.array([[row - radius, col - radius], [row + radius, col + radius]])
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    centre_r, centre_c = resample_centres([row, col], scale)
    return corners, (rr - centre_r) ** 2 + (cc - centre_c) ** 2 <= (radius * scale) ** 2


def _shape_mask(roi: object, data: np.ndarray, shape: tuple[int, int], label: str) -> np.ndarray:
    """The outline of a polygon, rectangle or ellipse ROI (resampled ``data``), filled."""
    from napari_pathreview.explain.masks import mask_from_shapes

    kind = getattr(roi, "shape_type", None)
    if kind == "polygon":
        return _polygon_mask(data, shape, label)
    if kind in ("rectangle", "ellipse"):
        return mask_from_shapes([data], kind, shape)
    raise PatchError(f"{label}: a {kind!r} encloses no area; use polygons or ellipses")


def _outside(points: np.ndarray, size: tuple[int, ...]) -> str:
    """Where an ROI lies and how large the image is, both in the file's pixels (what the
    reader drew on), not the resampled working size the user never sees."""
    (r0, c0), (r1, c1) = points.min(axis=0), points.max(axis=0)
    rows, cols = size
    return (
        f"it spans rows {r0:.0f}–{r1:.0f} and columns {c0:.0f}–{c1:.0f}, the image "
        f"{rows} rows × {cols} columns (the file's pixels)"
    )


def labels_rois_mask(path: str | Path, shape: tuple[int, int], where: str) -> np.ndarray:
    """A napari Labels mask file (any label > 0 is lesion) resized to ``shape`` (nearest)."""
    import cv2

    from napari_pathreview.io import load_image

    try:
        labels = np.asarray(load_image(path).data)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad ROI file
        raise PatchError(f"{where}: cannot read labels mask {path} ({error})") from error
    labels = labels[..., 0] if labels.ndim == 3 else labels
    if labels.ndim != 2:
        raise PatchError(f"{where}: labels mask {path} is not a 2-D image")
    resized = cv2.resize(
        (labels > 0).astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST
    )
    if not resized.any():
        raise PatchError(f"{where}: labels mask {path} holds no label")
    return resized.astype(bool)


def geojson_rois(text: str, base: Path, where: str) -> list:
    """ROIs of a GeoJSON string, or of a ``.geojson`` file it names (relative to ``base``)."""
    from napari_pathreview.io.geojson import parse_geojson_rois, read_geojson_rois

    text = text.strip()
    if not text:
        return []
    if text.startswith(("{", "[")):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise PatchError(f"{where}: ROI GeoJSON is not valid JSON ({error})") from None
        return [
            r for r in parse_geojson_rois(document, where) if r.shape_type not in ("path", "line")
        ]
    path = Path(text) if Path(text).is_absolute() else base / text
    return [r for r in read_geojson_rois(path) if r.shape_type not in ("path", "line")]


def tissue_mask(pixels: np.ndarray, modality: str) -> np.ndarray:
    """Where negatives may come from: for mammograms the breast (``preprocessing.breast_mask``:
    largest bright component, film labels dropped), for histology QC's tissue
    (``stain.qc.tissue_mask``), so negatives come from what QC calls tissue."""
    if modality == "mammogram":
        return breast_mask(pixels[..., :3].mean(axis=-1))
    from napari_pathreview.stain.qc import tissue_mask as histology_tissue

    return histology_tissue(pixels)


# ----- sampling ------------------------------------------------------------------------------
def _dilate(mask: np.ndarray, margin: int) -> np.ndarray:
    if margin <= 0 or not mask.any():
        return mask
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~mask) <= margin


def _pick(candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` (row, col) centres drawn uniformly from the True pixels of ``candidates``."""
    rows, cols = np.nonzero(candidates)
    if n <= 0 or rows.size == 0:
        return np.zeros((0, 2), int)
    idx = rng.choice(rows.size, size=n, replace=rows.size < n)
    return np.stack([rows[idx], cols[idx]], axis=1)


def _hard(candidates: np.ndarray, score: np.ndarray, n: int, rng) -> np.ndarray:
    """Centres among the ``candidates`` a previous model scored highest (its false positives)."""
    rows, cols = np.nonzero(candidates)
    if n <= 0 or rows.size == 0:
        return np.zeros((0, 2), int)
    values = score[rows, cols] + rng.random(rows.size) * 1e-6
    top = np.argsort(-values)[: max(n * 4, n)]
    chosen = rng.choice(top, size=min(n, top.size), replace=False)
    return np.stack([rows[chosen], cols[chosen]], axis=1)


def crop_patch(pixels: np.ndarray, centre: Sequence[int], size: int) -> np.ndarray:
    """A size×size crop centred on ``centre``, edge-replicated where it leaves the image."""
    half = size // 2
    r0, c0 = int(centre[0]) - half, int(centre[1]) - half
    pad = (
        (max(0, -r0), max(0, r0 + size - pixels.shape[0])),
        (max(0, -c0), max(0, c0 + size - pixels.shape[1])),
    )
    if any(v for p in pad for v in p):
        pixels = np.pad(pixels, pad + ((0, 0),) * (pixels.ndim - 2), mode="edge")
        r0, c0 = r0 + pad[0][0], c0 + pad[1][0]
    return np.ascontiguousarray(pixels[r0 : r0 + size, c0 : c0 + size])


def _quotas(
    images: Sequence[LesionImage], config: PatchSampling, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(positives, negatives) per image so that no patient exceeds ``max_per_patient``.

    A patient with more images than the quota allows keeps a random subset of them (those
    with an ROI first), two patches each; the others give none.
    """
    by_patient: dict[str, list[int]] = {}
    for i, image in enumerate(images):
        by_patient.setdefault(image.patient_id, []).append(i)
    quotas = [(0, 0)] * len(images)
    for members in by_patient.values():
        room = max(1, config.max_per_patient // 2)
        if len(members) > room:
            order = rng.permutation(members)
            order = sorted(order, key=lambda i: not images[i].has_roi)
            members = order[:room]
        share = max(2, config.max_per_patient // len(members))
        for i in members:
            pos = min(config.positives_per_image, share // 2) if images[i].has_roi else 0
            quotas[i] = (pos, min(config.negatives_per_image, share - pos))
    return quotas


def sample_patches(
    images: Sequence[LesionImage],
    config: PatchSampling,
    negative_class: int,
    hard_maps: Sequence[np.ndarray | None] | None = None,
    weak_negatives: bool = False,
) -> PatchSet:
    """Draw the patch dataset of ``images`` (one fold's training or validation part).

    Args:
        images: the part's images at training resolution.
        config: quotas, sizes and margin.
        negative_class: class index of negatives (e.g. "normal").
        hard_maps: per image, a previous model's lesion probability map (same H×W) or None.
        weak_negatives: also draw negatives from images of a lesion class that have no ROI
            (off by default: the lesion could be anywhere in them).
    """
    rng = np.random.default_rng(config.seed)
    size = config.patch_size + 2 * config.context
    rows: list[tuple[np.ndarray, int, float, int, int, np.ndarray]] = []
    for i, (image, (n_pos, n_neg)) in enumerate(
        zip(images, _quotas(images, config, rng), strict=True)
    ):
        if not image.has_roi and image.label != negative_class and not weak_negatives:
            continue  # weakly labelled: a bag only
        centres: list[tuple[np.ndarray, int, int]] = [
            (_pick(image.roi_mask, n_pos, rng), image.label, 0)
        ]
        allowed = image.tissue_mask & ~_dilate(image.roi_mask, config.margin)
        n_bg = int(round(n_neg * config.background_fraction))
        n_hard = 0
        hard_map = hard_maps[i] if hard_maps is not None else None
        if hard_map is not None:
            n_hard = int(round((n_neg - n_bg) * config.hard_fraction))
            centres.append((_hard(allowed, hard_map, n_hard, rng), negative_class, 3))
        centres.append((_pick(allowed, n_neg - n_bg - n_hard, rng), negative_class, 1))
        centres.append((_pick(~image.tissue_mask, n_bg, rng), negative_class, 2))
        for points, label, kind in centres:
            for point in points:
                rows.append(
                    (crop_patch(image.pixels, point, size), label, image.weight, i, kind, point)
                )
    if not rows:
        empty = np.zeros(0, int)
        return PatchSet(
            np.zeros((0, size, size, 3), np.uint8),
            empty,
            np.zeros(0),
            empty,
            empty,
            np.zeros((0, 2), int),
        )
    pixels, labels, weights, index, kinds, points = zip(*rows, strict=True)
    return PatchSet(
        np.stack(pixels),
        np.asarray(labels),
        np.asarray(weights, float),
        np.asarray(index),
        np.asarray(kinds),
        np.asarray(points),
    )


def check_classes_have_rois(
    images: Sequence[LesionImage], classes: Sequence[str], negative_class: int
) -> None:
    """Refuse a lesion class none of whose images has an ROI: no positive patch could teach it."""
    for index, name in enumerate(classes):
        if index == negative_class:
            continue
        members = [im for im in images if im.label == index]
        if members and not any(im.has_roi for im in members):
            raise PatchError(
                f"class {name!r} has {len(members)} image(s) but no ROI at all: lesion-aware "
                "training needs at least one outlined lesion per class (draw ROIs in the Review "
                "widget, or set lesion.negative_class / drop the class)"
            )
