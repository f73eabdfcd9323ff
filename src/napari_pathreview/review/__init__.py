"""The review store: pathologists' reviews of the model's predictions, kept safely and
exported as a training manifest. SQLite by default, PostgreSQL for a team."""

from napari_pathreview.review.manifest import MANIFEST_COLUMNS, write_manifest
from napari_pathreview.review.migrations import LATEST_VERSION
from napari_pathreview.review.records import (
    ImageRecord,
    PredictionRecord,
    ReviewNotFoundError,
    ReviewRecord,
    file_sha256,
)
from napari_pathreview.review.stats import AgreementStats, KappaResult, compute_agreement
from napari_pathreview.review.store import ReviewStore

__all__ = [
    "LATEST_VERSION",
    "MANIFEST_COLUMNS",
    "AgreementStats",
    "ImageRecord",
    "KappaResult",
    "PredictionRecord",
    "ReviewNotFoundError",
    "ReviewRecord",
    "ReviewStore",
    "compute_agreement",
    "file_sha256",
    "write_manifest",
]
