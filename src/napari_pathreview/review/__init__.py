"""The review store: pathologists' reviews of the model's predictions, kept safely and
exported as a training manifest. SQLite by default, PostgreSQL for a team.

Names resolve lazily (PEP 562), so the CLI's parser (``review.cli``) does not load
SQLAlchemy before a command needs the database.
"""

from __future__ import annotations

from napari_pathreview._lazy import lazy_attributes

_EXPORTS: dict[str, str] = {
    "LATEST_VERSION": "napari_pathreview.review.migrations",
    "MANIFEST_COLUMNS": "napari_pathreview.review.manifest",
    "DEFAULT_DISAGREEMENT_WEIGHT": "napari_pathreview.review.manifest",
    "write_manifest": "napari_pathreview.review.manifest",
    "AgreementStats": "napari_pathreview.review.stats",
    "KappaResult": "napari_pathreview.review.stats",
    "compute_agreement": "napari_pathreview.review.stats",
    "ImageRecord": "napari_pathreview.review.records",
    "PredictionRecord": "napari_pathreview.review.records",
    "ReviewNotFoundError": "napari_pathreview.review.records",
    "ReviewRecord": "napari_pathreview.review.records",
    "file_sha256": "napari_pathreview.review.records",
    "ReviewStore": "napari_pathreview.review.store",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, __all__)
