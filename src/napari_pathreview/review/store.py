"""The review store: images, the model's predictions and pathologists' reviews of them.

One :class:`ReviewStore` per database. Every write is one transaction, so a crash or a
killed process leaves either the whole review or none of it. A database locked by someone
else is retried a few times (each try already waits ``busy_timeout_s`` inside SQLite or
PostgreSQL) and then refused with :class:`~napari_pathreview.errors.ReviewStoreError`; the
caller still holds the review and can simply call again. An SQLite file the user cannot write
(a read-only share) is opened read-only: every read works, every write is refused up front.
Statements are SQLAlchemy Core expressions with bound parameters; no SQL is built from user text.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from napari_pathreview.errors import InvalidInputError, ReviewStoreError
from napari_pathreview.review import migrations, validation
from napari_pathreview.review.engine import (
    Engines,
    open_engines,
    run_with_retries,
    unwritable_message,
)
from napari_pathreview.review.manifest import DEFAULT_DISAGREEMENT_WEIGHT
from napari_pathreview.review.queries import model_clauses, review_query
from napari_pathreview.review.records import (
    ImageRecord,
    PredictionRecord,
    ReviewNotFoundError,
    ReviewRecord,
    as_aware,
    image_row,
    prediction_row,
    review_row,
)
from napari_pathreview.review.schema import images, predictions, reviews

if TYPE_CHECKING:
    from napari_pathreview.review.stats import AgreementStats

__all__ = ["ReviewNotFoundError", "ReviewStore"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ReviewStore:
    """Reviews in SQLite (default, ``$PATHREVIEW_HOME/reviews.sqlite``) or PostgreSQL.

    Args:
        url: SQLAlchemy URL or SQLite file path; default ``$PATHREVIEW_DB_URL`` or the home file.
        busy_timeout_s: How long one attempt waits for another writer's lock.
        retries: Further attempts after a lock timeout before giving up.
        retry_backoff_s: Pause before the first retry (doubles each time).
        create: Whether a missing SQLite file is created (``False`` for read-only callers).

    Raises:
        ReviewStoreError: The database cannot be opened, is newer than this code, or stays locked.
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        busy_timeout_s: float = 5.0,
        retries: int = 3,
        retry_backoff_s: float = 0.2,
        create: bool = True,
    ) -> None:
        if retries < 0 or busy_timeout_s < 0 or retry_backoff_s < 0:
            raise InvalidInputError("busy_timeout_s, retries and retry_backoff_s must be >= 0")
        self._engines: Engines = open_engines(url, busy_timeout_s, create=create)
        self._retries = retries
        self._backoff = retry_backoff_s
        self.schema_version = self._retry(
            "open the review database",
            lambda: self._engines.steady(
                lambda: migrations.upgrade(
                    self._engines.read,
                    self._engines.write,
                    where=self.url,
                    unwritable=self._engines.unwritable,
                )
            ),
        )

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._engines.display

    @property
    def read_only(self) -> bool:
        """Whether this is an SQLite file we cannot write, opened for reading only."""
        return self._engines.unwritable is not None

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engines.url.get_backend_name()

    def close(self) -> None:
        """Release pooled connections (SQLite file handles, PostgreSQL sessions)."""
        self._engines.read.dispose()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReviewStore({self.url!r})"

    # -- transaction plumbing -------------------------------------------------------------

    def _retry(self, action: str, attempt: Callable[[], T]) -> T:
        return run_with_retries(
            attempt, action, self.url, self._retries, self._backoff, self._engines.deadline
        )

    def _write(self, action: str, work: Callable[[Connection], T]) -> T:
        if self._engines.unwritable is not None:  # opened read-only: refused before any work
            path = Path(self._engines.url.database or "")
            raise ReviewStoreError(unwritable_message(action, path, self._engines.unwritable))

        def attempt() -> T:
            with self._engines.write.begin() as conn:
                return work(conn)

        return self._retry(action, attempt)

    def _read(self, action: str, work: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self._engines.read.connect() as conn:
                return work(conn)

        return self._retry(action, lambda: self._engines.steady(attempt))

    # -- images ---------------------------------------------------------------------------

    def add_image(
        self,
        path: str | os.PathLike[str],
        modality: str,
        metadata: Mapping[str, Any] | None = None,
        patient_id: str | None = None,
    ) -> str:
        """Record an image by the sha256 of its bytes; adding it again changes nothing.

        The first path, modality and metadata recorded are kept (the same bytes under a new
        name are the same image); a patient id is filled in if it was unknown before.

        Returns:
            The image's sha256 (hex), the key every other call uses.
        """
        row = image_row(path, modality, metadata, patient_id)
        sha, patient = row["sha256"], row["patient_id"]

        def work(conn: Connection) -> str:
            dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
            conn.execute(dialect.insert(images).values(**row).on_conflict_do_nothing())
            if patient is not None:
                conn.execute(
                    update(images)
                    .where(and_(images.c.sha256 == sha, images.c.patient_id.is_(None)))
                    .values(patient_id=patient)
                )
            return sha

        return self._write("add the image", work)

    def image(self, image_sha256: str) -> ImageRecord:
        """The stored facts of one image."""

        def work(conn: Connection) -> ImageRecord:
            row = self._image_row(conn, image_sha256)
            return ImageRecord(**{**row._mapping, "added_at": as_aware(row.added_at)})

        return self._read("read the image", work)

    # -- predictions ----------------------------------------------------------------------

    def _insert_prediction(self, conn: Connection, values: dict[str, Any]) -> int:
        self._require_image(conn, values["image_sha256"])
        result = conn.execute(insert(predictions), values)
        return int(result.inserted_primary_key[0])

    def add_prediction(
        self,
        image_sha256: str,
        model_name: str,
        model_version: str | int,
        probabilities: Mapping[str, float],
        settings: Mapping[str, Any] | None = None,
        *,
        label: str | None = None,
    ) -> int:
        """Record what ``model_name@model_version`` said about an image.

        Args:
            probabilities: Class name → probability; the keys are the model's classes.
            settings: How it was run (stain, TTA, threshold, device...), kept for provenance.
            label: The model's call when a decision threshold decided it; default the argmax.

        Returns:
            The prediction id, to link reviews to.
        """
        values = prediction_row(
            image_sha256, model_name, model_version, probabilities, settings, label
        )
        return self._write("add the prediction", lambda conn: self._insert_prediction(conn, values))

    def predictions(
        self, image_sha256: str | None = None, model: str | None = None
    ) -> list[PredictionRecord]:
        """Stored predictions, oldest first, optionally of one image and/or ``name[@version]``."""
        query = select(predictions).order_by(predictions.c.created_at, predictions.c.id)
        if image_sha256 is not None:
            query = query.where(predictions.c.image_sha256 == image_sha256)
        if model is not None:
            query = query.where(*model_clauses(model))

        def work(conn: Connection) -> list[PredictionRecord]:
            return [
                PredictionRecord(**{**row._mapping, "created_at": as_aware(row.created_at)})
                for row in conn.execute(query)
            ]

        return self._read("list predictions", work)

    # -- reviews --------------------------------------------------------------------------

    def _image_row(self, conn: Connection, sha: str, hint: str = "") -> Any:
        """Image ``sha``'s row; not stored: a :class:`ReviewNotFoundError` naming it and this
        store, then ``hint``."""
        row = conn.execute(select(images).where(images.c.sha256 == sha)).first()
        if row is None:
            raise ReviewNotFoundError(f"no image with sha256 {sha} in {self.url}{hint}")
        return row

    def _require_image(self, conn: Connection, sha: str) -> None:
        self._image_row(conn, sha, "; record it with add_image first")

    def _insert_review(
        self, conn: Connection, values: dict[str, Any], allowed: Sequence[str] | None
    ) -> int:
        self._require_image(conn, values["image_sha256"])
        prediction_id = values["prediction_id"]
        if prediction_id is not None:
            row = conn.execute(
                select(
                    predictions.c.image_sha256,
                    predictions.c.probabilities,
                    predictions.c.predicted_label,
                ).where(predictions.c.id == prediction_id)
            ).first()
            if row is None:
                raise ReviewNotFoundError(f"no prediction with id {prediction_id} in {self.url}")
            if row.image_sha256 != values["image_sha256"]:
                raise InvalidInputError(
                    f"prediction {prediction_id} is of image {row.image_sha256}, "
                    f"not {values['image_sha256']}"
                )
            if allowed is None:
                allowed = tuple(row.probabilities)
            if values["agrees_with_model"] != (values["label"] == row.predicted_label):
                logger.warning(
                    "review of prediction %s: agrees_with_model=%s but label %r vs model %r",
                    prediction_id,
                    values["agrees_with_model"],
                    values["label"],
                    row.predicted_label,
                )
        validation.check_label(values["label"], allowed)
        result = conn.execute(insert(reviews), values)
        return int(result.inserted_primary_key[0])

    def add_review(
        self,
        image_sha256: str,
        reviewer: str,
        label: str,
        agrees_with_model: bool | None,
        confidence: float | None = None,
        notes: str = "",
        roi_geojson: Mapping[str, Any] | str | None = None,
        prediction_id: int | None = None,
        allowed_labels: Sequence[str] | None = None,
        *,
        created_at: datetime | date | str | None = None,
    ) -> int:
        """Record one reviewer's judgement of an image (and of a prediction, when linked).

        Args:
            label: The reviewer's label; must be in ``allowed_labels``, or when those are not
                given and a prediction is linked, among that model's classes.
            agrees_with_model: Whether the reviewer agrees with the model's call; None
                (stored as NULL) for a review with no linked prediction.
            confidence: The reviewer's confidence in [0, 1], if stated.
            roi_geojson: The region that justifies the label: a GeoJSON Feature,
                FeatureCollection or geometry (object or JSON text).
            created_at: When the review was made (default now); for importing old reviews.

        Returns:
            The review id.
        """
        values = review_row(
            image_sha256,
            reviewer,
            label,
            agrees_with_model,
            confidence,
            notes,
            roi_geojson,
            prediction_id,
            created_at,
        )
        allowed = None if allowed_labels is None else tuple(allowed_labels)
        return self._write(
            "add the review", lambda conn: self._insert_review(conn, values, allowed)
        )

    def add_prediction_and_review(
        self,
        image_sha256: str,
        model_name: str,
        model_version: str | int,
        probabilities: Mapping[str, float],
        settings: Mapping[str, Any] | None,
        reviewer: str,
        label: str,
        agrees_with_model: bool,
        confidence: float | None = None,
        notes: str = "",
        roi_geojson: Mapping[str, Any] | str | None = None,
        *,
        predicted_label: str | None = None,
    ) -> tuple[int, int]:
        """Record a prediction and its review in one transaction: both rows or neither.

        Returns:
            ``(prediction_id, review_id)``.
        """
        prediction = prediction_row(
            image_sha256, model_name, model_version, probabilities, settings, predicted_label
        )
        review = review_row(
            image_sha256,
            reviewer,
            label,
            agrees_with_model,
            confidence,
            notes,
            roi_geojson,
            None,
            None,
        )

        def work(conn: Connection) -> tuple[int, int]:
            prediction_id = self._insert_prediction(conn, prediction)
            review_id = self._insert_review(conn, {**review, "prediction_id": prediction_id}, None)
            return prediction_id, review_id

        return self._write("add the prediction and review", work)

    def reviews(
        self,
        reviewer: str | None = None,
        model: str | None = None,
        disagreements_only: bool = False,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        label: str | None = None,
    ) -> list[ReviewRecord]:
        """Reviews matching every given filter, oldest first.

        Args:
            model: ``name`` or ``name@version`` of the reviewed prediction.
            disagreements_only: Only reviews that disagree with the model.
            since: Inclusive lower bound on the review time (datetime, date or ISO text).
            until: Inclusive upper bound; a bare date includes that whole day.
        """
        query = review_query(reviewer, model, disagreements_only, since, until, label)

        def work(conn: Connection) -> list[ReviewRecord]:
            records = []
            for row in conn.execute(query):
                fields = dict(row._mapping)
                fields["created_at"] = as_aware(fields["created_at"])
                roi = fields["roi_geojson"]
                fields["roi_geojson"] = None if roi is None else json.loads(roi)
                records.append(ReviewRecord(**fields))
            return records

        return self._read("list reviews", work)

    def counts(self) -> dict[str, int]:
        """Rows per table: ``images``, ``predictions``, ``reviews``."""

        def work(conn: Connection) -> dict[str, int]:
            return {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in (images, predictions, reviews)
            }

        return self._read("count rows", work)

    def latest_reviews(self, **filters: Any) -> list[ReviewRecord]:
        """Each reviewer's latest review of each image, then narrowed by ``filters``.

        "Latest" (by review time, then id) is decided over *all* reviews first, so a review
        that its author later superseded never comes back, whatever the filters: e.g. with
        ``disagreements_only=True`` a disagreement later corrected to agreement is left out.

        Args:
            **filters: Those of :meth:`reviews`.
        """
        from napari_pathreview.review.stats import latest_reviews

        latest_ids = {record.id for record in latest_reviews(self.reviews())}
        return [record for record in self.reviews(**filters) if record.id in latest_ids]

    def agreement(self, **filters: Any) -> AgreementStats:
        """Agreement statistics (Cohen's kappa) over :meth:`latest_reviews`; see :mod:`.stats`.

        Args:
            **filters: Those of :meth:`reviews` (e.g. ``model="demo@1"``, ``since=...``).

        Returns:
            An :class:`~napari_pathreview.review.stats.AgreementStats`.
        """
        from napari_pathreview.review.stats import compute_agreement

        return compute_agreement(self.latest_reviews(**filters))

    def export_manifest(
        self,
        path: str | os.PathLike[str],
        disagreement_weight: float = DEFAULT_DISAGREEMENT_WEIGHT,
        **filters: Any,
    ) -> Path:
        """Write the training manifest CSV: one row per :meth:`latest_reviews` entry.

        Rows disagreeing with the model get ``disagreement_weight``, others 1.0; see
        :mod:`.manifest` for the columns. ``filters`` are those of :meth:`reviews`.

        Returns:
            The path written.
        """
        from napari_pathreview.review.manifest import write_manifest

        return write_manifest(self.latest_reviews(**filters), Path(path), disagreement_weight)
