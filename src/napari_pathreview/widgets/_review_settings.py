"""The Review dock's part of a saved session: the form's reviewer and filters, and the work queue
(its folder or CSV, order, model and the image under review), put back one key at a time.

The same rule as the Analyze settings (:mod:`._session_keys`): a value the dock would refuse (a
reviewer that is not text, ``"only_mine": "no"``, an order the queue does not offer, a queue
folder that is gone, an image no longer in it) is left as the dock holds it and named with its key
in the one warning naming the session file; the rest is restored. A queue whose model is gone
opens in file-name order rather than not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_pathreview.errors import PathReviewError
from napari_pathreview.review.queue_source import queue_paths
from napari_pathreview.widgets._session_keys import (
    SkippedSettings,
    boolean,
    chosen,
    setter,
    text,
)

BY_NAME = "file name"  # the queue order that needs no model


def capture(review: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The form's settings and the queue (None: no queue open) as a session file keeps them."""
    form = {
        "reviewer": review.reviewer.value,
        "image": review.image_combo.value,
        "only_mine": bool(review.only_mine.value),
    }
    queue = review.queue
    if queue is None:
        return form, None
    return form, {
        "source": str(review.queue_source),
        "index": int(queue.index),
        "path": str(queue.current),  # the image, whatever order rebuilds the queue
        "order": str(review.queue_order.value),
        "model": review.queue_model.value.strip(),
    }


def restore_form(
    review: Any, document: Mapping[str, Any], skipped: SkippedSettings
) -> Mapping[str, Any]:
    """Put back the reviewer and the *only mine* filter (the form, count and list follow the
    reviewer); returns the session's ``review`` block for :func:`restore_place`."""
    form = skipped.section("review", document, "review")
    skipped.put("review.reviewer", form, "reviewer", lambda name: _reviewer(review, name))
    skipped.put("review.only_mine", form, "only_mine", setter(review.only_mine, boolean))
    review.reviewer_entered()
    return form


def restore_place(
    review: Any, document: Mapping[str, Any], form: Mapping[str, Any], skipped: SkippedSettings
) -> None:
    """Reopen the work queue at the image under review; without one (or when it cannot be
    reopened), pick the image the form was on."""
    queue = skipped.section("queue", document, "queue")
    if queue and _restore_queue(review, queue, skipped):
        skipped.known(form, "image")  # the queue opens its own image
    else:
        skipped.put("review.image", form, "image", chosen(review.image_combo, "image layer"))
    skipped.unknown("review", form)
    skipped.unknown("queue", queue)


def _reviewer(review: Any, name: Any) -> None:
    """The saved reviewer; an empty name leaves the one the dock holds."""
    if text(name).strip():
        review.reviewer.value = name.strip()


def _restore_queue(review: Any, queue: Mapping[str, Any], skipped: SkippedSettings) -> bool:
    """Load the saved queue; False (its source named) when it cannot be opened at all."""

    def put(name: str, apply: Any) -> None:
        skipped.put(f"queue.{name}", queue, name, apply)

    put("order", setter(review.queue_order, text))
    put("model", setter(review.queue_model, text))
    _check_order_model(review, skipped)
    paths: list[Path] = []
    put("source", lambda source: paths.extend(queue_paths(text(source))))
    if "source" not in queue:
        skipped.problems.append("queue.source: missing; no queue opened")
    if not paths:
        return False
    index: list[int] = []
    at: list[Path] = []
    put("index", lambda value: index.append(_position(value)))
    where = f"image {index[0] + 1}" if index else "the first image not reviewed"
    put("path", lambda value: at.append(_in_queue(value, paths, where)))
    review.load_queue(queue["source"], index=index[0] if index else None, at=(at or [None])[0])
    return True


def _check_order_model(review: Any, skipped: SkippedSettings) -> None:
    """An active-learning order needs its model registered here; without it the queue opens
    in file-name order (the model named) instead of failing to open."""
    from napari_pathreview import preflight

    order, model = str(review.queue_order.value), review.queue_model.value.strip()
    if order == BY_NAME:
        return
    try:
        if not model:
            raise ValueError(f"ordering the queue by {order} needs a model (NAME[@VERSION])")
        preflight.model_card(model)
    except (PathReviewError, ValueError) as error:
        skipped.problems.append(f"queue.model: {error}; the queue opens in {BY_NAME} order")
        review.queue_order.value = BY_NAME


def _position(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"must be a position in the queue (0, 1, …), got {value!r}")
    return value


def _in_queue(value: Any, paths: list[Path], where: str) -> Path:
    path = Path(text(value))
    if path not in paths:
        raise ValueError(f"{path} is no longer in the queue; it opens at {where}")
    return path
