"""Active learning for the review queue: which image should a pathologist look at next?

A reviewer's time is best spent where the model is least sure or visibly wrong. Three orders:

* ``uncertainty`` — how near the TTA-averaged probabilities lie to the model's own decision
  (:func:`decision_uncertainty`: for a binary card, the entropy with its threshold moved to
  0.5; else the entropy; high = unsure);
* ``tta_disagreement`` — how much the TTA views disagree (mean per-class standard deviation
  of the view probabilities): a decision that flips when the image is flipped is fragile;
* ``roi_disagreement`` — 1 − IoU between the model's map (a patch MIL model's patch map, else
  its Grad-CAM) and the ROI a reviewer drew: the model looks somewhere else.

No Qt here: the CLI (``pathreview review queue``) and the Review widget's queue both call
:func:`order_images`; the written CSV has a ``path`` column, so it is itself a work queue.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError

log = logging.getLogger(__name__)
QUEUE_ORDERS: tuple[str, ...] = ("uncertainty", "tta_disagreement", "roi_disagreement")


@dataclass(frozen=True)
class QueueEntry:
    """One image's place in the ordered queue and why."""

    path: Path
    score: float  # higher = review sooner; NaN = no score (e.g. no ROI), queued last
    label: str
    probs: tuple[float, ...]  # empty when the image could not be scored
    problem: str = ""  # why it could not be scored (unreadable, a multi-frame stack)


def entropy(probs: np.ndarray) -> float:
    """Shannon entropy (nats) of a probability vector; 0 for a certain prediction."""
    p = np.clip(np.asarray(probs, float), 1e-12, 1.0)
    return float(-(p * np.log(p)).sum())


def decision_uncertainty(probs: np.ndarray, threshold: float | None) -> float:
    """How unsure the model's decision is: the entropy (nats) of the probabilities as the
    decision reads them, ln 2 on a binary card's threshold and 0 far from it.

    A binary decision is P(positive) >= ``threshold``, so the least certain image is the one at
    the threshold, not at 0.5: with a threshold of 0.2, an image at P = 0.2 is a coin flip and
    one at 0.5 is called malignant with some margin. P is moved in log-odds by the threshold's
    (logit q = logit P - logit t, the prior shift that turns the threshold into 0.5) and the
    entropy of q is returned; at t = 0.5 this is the plain entropy, as before. Argmax decisions
    (``threshold`` None: more than two classes) keep the entropy of the probabilities.
    """
    probs = np.asarray(probs, float)
    if threshold is None or probs.shape[-1] != 2:
        return entropy(probs)
    eps = 1e-12
    p, t = np.clip([probs[-1], threshold], eps, 1 - eps)
    q = 1.0 / (1.0 + math.exp(-(math.log(p / (1 - p)) - math.log(t / (1 - t)))))
    return entropy(np.asarray([1.0 - q, q]))


def view_disagreement(view_probs: np.ndarray) -> float:
    """Mean over classes of the standard deviation of the views' probabilities (V×K)."""
    return float(np.asarray(view_probs, float).std(axis=0).mean())


def view_probabilities(predictor: Any, rgb: np.ndarray, tta: str) -> np.ndarray:
    """Class probabilities of each TTA view of one image (V×K)."""
    import torch

    from napari_pathreview import tta as tta_module

    with torch.inference_mode():
        x = predictor.prepare([rgb])
        views = tta_module.augment_batch(x, tta)
        logits = predictor.model(views.float().contiguous())
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


def reviewer_roi_mask(decoded: Any, roi: Mapping[str, Any], where: str) -> np.ndarray | None:
    """A reviewer's GeoJSON ROI (full-resolution pixels) as a mask on the decoded image.

    A slide is decoded at a coarse pyramid level, so the ROI is scaled by that level's size;
    None when the ROI holds no area.
    """
    from napari_pathreview.io.geojson import parse_geojson_rois
    from napari_pathreview.training.patches import rois_mask

    shapes = [r for r in parse_geojson_rois(roi, where) if r.shape_type not in ("path", "line")]
    if not shapes:
        return None
    rgb, full = decoded.rgb, decoded.source_shape
    scale = rgb.shape[1] / full[1] if full else 1.0
    return rois_mask(shapes, rgb.shape[:2], scale, where, source_shape=full)


def _has_patch_map(predictor: Any) -> bool:
    from napari_pathreview.inference.mil_maps import patch_mil_of

    return patch_mil_of(predictor) is not None


def _map_iou(predictor: Any, decoded: Any, roi: Mapping[str, Any], where: str) -> float:
    """IoU of the model's map against a reviewer's GeoJSON ROI (seed 004 protocol)."""
    from napari_pathreview.explain.metrics import roi_iou

    mask = reviewer_roi_mask(decoded, roi, where)
    if mask is None:
        return math.nan
    method = "patch_map" if _has_patch_map(predictor) else "gradcam"
    return roi_iou(predictor.explain(decoded.rgb, method).cam, mask)


def order_images(
    predictor: Any,
    paths: Sequence[str | Path],
    order: str = "uncertainty",
    tta: str = "flips",
    rois: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[QueueEntry]:
    """Score every image and sort the queue, most informative first.

    Args:
        predictor: an ``inference.Predictor`` (its model, preprocessing and classes).
        paths: the images.
        order: one of ``QUEUE_ORDERS``.
        tta: the views uncertainty is averaged over ("none", "flips", "d4").
        rois: image sha256 → reviewer ROI GeoJSON, for ``roi_disagreement``.
        progress: called with (done, total).

    An image that cannot be read for the model (damaged, a multi-frame stack a 2-D model will
    not guess a frame of) is still queued, last and unscored, with ``problem`` saying why: the
    reviewer sees it, and one file does not cost the ordering of the rest.

    Raises:
        InvalidInputError: unknown order, or no images.
    """
    from napari_pathreview.errors import ImageReadError
    from napari_pathreview.inference.preprocess import decode
    from napari_pathreview.review.records import file_sha256

    if order not in QUEUE_ORDERS:
        raise InvalidInputError(f"queue order {order!r} is not one of {', '.join(QUEUE_ORDERS)}")
    if not paths:
        raise InvalidInputError("no images to order")
    if order == "roi_disagreement" and rois and not _has_patch_map(predictor):
        predictor.require_cam_grid()  # a 1×1 CAM layer would score every ROI image 1 - 0
    entries = []
    for i, path in enumerate(paths):
        path = Path(path)
        try:
            decoded = decode(path, min_side=min(predictor.spec.hw))
        except ImageReadError as error:
            log.warning("not scored, queued last: %s", error)
            entries.append(QueueEntry(path, math.nan, "", (), problem=str(error)))
            continue
        views = view_probabilities(predictor, decoded.rgb, tta)
        mean = views.mean(axis=0)
        if order == "uncertainty":
            score = decision_uncertainty(mean, predictor.threshold)
        elif order == "tta_disagreement":
            score = view_disagreement(views)
        else:
            roi = (rois or {}).get(file_sha256(path))
            score = math.nan if roi is None else 1.0 - _map_iou(predictor, decoded, roi, path.name)
        label = predictor.decide(mean)  # the card's threshold, as `predict` labels it
        entries.append(QueueEntry(path, float(score), label, tuple(float(v) for v in mean)))
        if progress:
            progress(i + 1, len(paths))
    return sorted(
        entries, key=lambda e: (math.isnan(e.score), -np.nan_to_num(e.score), str(e.path))
    )


def reviewer_rois(store: Any) -> dict[str, Mapping[str, Any]]:
    """image sha256 → the latest review's ROI GeoJSON, for images whose review has one."""
    out = {}
    for record in store.latest_reviews():
        if record.roi_geojson:
            roi = record.roi_geojson
            out[record.image_sha256] = json.loads(roi) if isinstance(roi, str) else roi
    return out


def write_queue_csv(entries: Sequence[QueueEntry], path: str | Path, order: str, classes) -> Path:
    """The ordered queue as CSV (``path`` first: the Review widget opens it as a work queue).

    An image that could not be scored has empty score, label and probabilities, and says why
    in ``problem``. Image paths are written absolute: readers resolve a relative one against the
    CSV's folder, which is not the folder the paths were given relative to
    (``--out queues/next.csv``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["path", "rank", order, "predicted_label", *[f"p_{c}" for c in classes]]
        writer.writerow([*header, "problem"])
        for rank, entry in enumerate(entries, start=1):
            score = "" if math.isnan(entry.score) else f"{entry.score:.6f}"
            writer.writerow(
                [
                    str(Path(entry.path).resolve()),
                    rank,
                    score,
                    entry.label,
                    *([f"{p:.6f}" for p in entry.probs] or [""] * len(classes)),
                    entry.problem,
                ]
            )
    return path


def store_queue(store: Any, model: str | None = None) -> tuple[list[Path], str]:
    """The images the review store holds predictions for (still on disk) and the model to
    order them with: ``model``, else the model of the most recent prediction."""
    records = store.predictions(model=model)
    if not records:
        raise InvalidInputError(
            "the review store holds no predictions"
            + (f" of {model}" if model else "")
            + "; give a folder or CSV of images and --model"
        )
    ref = model or f"{records[-1].model_name}@{records[-1].model_version}"
    seen, paths = set(), []
    for record in records:
        if record.image_sha256 in seen:
            continue
        seen.add(record.image_sha256)
        path = Path(store.image(record.image_sha256).path)
        if path.is_file():
            paths.append(path)
    if not paths:
        raise InvalidInputError("none of the store's predicted images is on disk any more")
    return paths, ref
