"""The training manifest: the reviewed labels as a CSV that ``pathreview train`` reads.

Rule: one row per (image, reviewer) — that reviewer's **latest** review of the image (by
review time, then id), so a reviewer who changed their mind contributes only the new label,
and two reviewers who disagree contribute one row each (training sees both labels, each at
its weight). "Latest" is decided over all reviews before any filter is applied, so a
review its author superseded never reaches the manifest. Rows whose review disagrees with
the model get ``disagreement_weight`` (e.g. 2.0 to emphasise the model's mistakes when
retraining); all others get 1.0.

Columns: path (absolute), sha256, label, patient_id (empty when unknown), modality,
roi_geojson (compact GeoJSON text or empty), weight, agrees_with_model (``true``/``false``),
reviewer, review_id. The file is written to a temporary name and renamed (``_atomic``), so a
reader never sees half a manifest.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

from napari_pathreview import preflight
from napari_pathreview._atomic import atomic_path
from napari_pathreview.errors import InvalidInputError, ReviewStoreError
from napari_pathreview.review.records import ReviewRecord
from napari_pathreview.review.stats import latest_reviews

# The one default weight of reviews that disagree with the model (CLI, widget and API agree).
DEFAULT_DISAGREEMENT_WEIGHT = 2.0

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "sha256",
    "label",
    "patient_id",
    "modality",
    "roi_geojson",
    "weight",
    "agrees_with_model",
    "reviewer",
    "review_id",
)


def _row(record: ReviewRecord, disagreement_weight: float) -> dict[str, str]:
    import json

    roi = (
        "" if record.roi_geojson is None else json.dumps(record.roi_geojson, separators=(",", ":"))
    )
    return {
        "path": record.image_path,
        "sha256": record.image_sha256,
        "label": record.label,
        "patient_id": record.patient_id or "",
        "modality": record.modality,
        "roi_geojson": roi,
        "weight": repr(float(disagreement_weight) if record.agrees_with_model is False else 1.0),
        # empty: reviewed without a prediction, so neither agreeing nor disagreeing
        "agrees_with_model": {True: "true", False: "false"}.get(record.agrees_with_model, ""),
        "reviewer": record.reviewer,
        "review_id": str(record.id),
    }


def write_manifest(
    records: Iterable[ReviewRecord],
    path: Path,
    disagreement_weight: float = DEFAULT_DISAGREEMENT_WEIGHT,
) -> Path:
    """Write the manifest for ``records`` (see the module doc for the rule) to ``path``.

    Raises:
        InvalidInputError: The weight is negative or not finite, or ``path`` is a folder.
        ReviewStoreError: The file cannot be written.
    """
    if isinstance(disagreement_weight, bool) or not isinstance(disagreement_weight, (int, float)):
        raise InvalidInputError(
            f"disagreement_weight must be a number, got {disagreement_weight!r}"
        )
    if not math.isfinite(disagreement_weight) or disagreement_weight < 0:
        raise InvalidInputError(f"disagreement_weight must be >= 0, got {disagreement_weight}")
    path = Path(path).expanduser()
    # not a folder; replacing a file is the caller's call (`review export --force`, a dialog)
    preflight.output_file(path, "the manifest path", "manifest.csv", overwrite=True)
    rows = [_row(r, disagreement_weight) for r in latest_reviews(records)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with (
            atomic_path(path) as temporary,
            temporary.open("w", newline="", encoding="utf-8") as stream,
        ):
            writer = csv.DictWriter(stream, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as error:
        raise ReviewStoreError(f"cannot write the manifest {path}: {error}") from error
    return path
