"""The review database's tables at the newest schema version (SQLAlchemy Core).

These ``Table`` objects are what queries use. They describe the schema *after* every
migration in :mod:`napari_pathreview.review.migrations` has run; the migrations themselves
build older shapes step by step, so an old database and a new one end up identical.

Timestamps are stored as naive UTC (``DateTime`` without a zone) on every backend, so SQLite
and PostgreSQL compare and sort them the same way; :mod:`store` hands out aware UTC values.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

SHA256_LENGTH = 64

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", DateTime, nullable=False),
)

images = Table(
    "images",
    metadata,
    Column("sha256", String(SHA256_LENGTH), primary_key=True),
    Column("path", Text, nullable=False),
    Column("modality", String(32), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("added_at", DateTime, nullable=False),
    Column("patient_id", String(128), nullable=True),  # v2
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "image_sha256",
        String(SHA256_LENGTH),
        ForeignKey("images.sha256", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(50), nullable=False),
    Column("predicted_label", String(100), nullable=False),
    Column("probabilities", JSON, nullable=False),
    Column("settings", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "image_sha256",
        String(SHA256_LENGTH),
        ForeignKey("images.sha256", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "prediction_id",
        Integer,
        ForeignKey("predictions.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("reviewer", String(200), nullable=False),
    Column("label", String(100), nullable=False),
    Column("agrees_with_model", Boolean, nullable=True),  # v4: NULL = no prediction judged
    Column("notes", Text, nullable=False),
    Column("roi_geojson", Text, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("confidence", Float, nullable=True),  # v2
)

# v3: the filters the review list and the export use most.
INDEXES: tuple[Index, ...] = (
    Index(
        "ix_reviews_image_reviewer_created",
        reviews.c.image_sha256,
        reviews.c.reviewer,
        reviews.c.created_at,
    ),
    Index("ix_reviews_created", reviews.c.created_at),
    Index("ix_predictions_image", predictions.c.image_sha256),
    Index("ix_predictions_model", predictions.c.model_name, predictions.c.model_version),
)
