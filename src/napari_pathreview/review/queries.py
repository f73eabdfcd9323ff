"""Which reviews and predictions a store query selects: the filters shared by listing,
exporting and the agreement figures, built as SQLAlchemy Core (bound parameters only)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, select

from napari_pathreview.review import validation
from napari_pathreview.review.records import split_model_ref
from napari_pathreview.review.schema import images, predictions, reviews


def model_clauses(model: str) -> list[Any]:
    """The clauses that pick predictions of ``model`` (NAME, or NAME@VERSION)."""
    name, version = split_model_ref(validation.require_text(model, "model"))
    clauses = [predictions.c.model_name == name]
    if version is not None:
        clauses.append(predictions.c.model_version == version)
    return clauses


def review_query(
    reviewer: str | None,
    model: str | None,
    disagreements_only: bool,
    since: datetime | date | str | None,
    until: datetime | date | str | None,
    label: str | None,
) -> Select[Any]:
    """Reviews with their image and prediction, oldest first, narrowed by the filters
    (``until`` a date: that whole day; a time: up to it)."""
    query = (
        select(
            reviews,
            images.c.path.label("image_path"),
            images.c.modality,
            images.c.patient_id,
            predictions.c.model_name,
            predictions.c.model_version,
            predictions.c.predicted_label,
        )
        .join(images, images.c.sha256 == reviews.c.image_sha256)
        .outerjoin(predictions, predictions.c.id == reviews.c.prediction_id)
        .order_by(reviews.c.created_at, reviews.c.id)
    )
    if reviewer is not None:
        query = query.where(reviews.c.reviewer == reviewer)
    if model is not None:
        query = query.where(*model_clauses(model))
    if disagreements_only:
        query = query.where(reviews.c.agrees_with_model.is_(False))
    start = validation.to_utc_naive(since)
    if start is not None:
        query = query.where(reviews.c.created_at >= start)
    end = validation.to_utc_naive(until, end_of_day=True)
    if end is not None:
        inclusive = isinstance(until, datetime) or (isinstance(until, str) and len(until) > 10)
        query = query.where(
            reviews.c.created_at <= end if inclusive else reviews.c.created_at < end
        )
    if label is not None:
        query = query.where(reviews.c.label == label)
    return query
