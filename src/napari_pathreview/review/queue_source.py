"""Where a review work queue comes from: a folder's images, or a CSV's ``path`` column.

One reading for the Review dock's Open folder/CSV and ``pathreview review queue``: the same
images (those the reader opens), relative CSV paths resolved against the CSV's folder.
"""

from __future__ import annotations

from pathlib import Path

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.csv_table import read_csv_rows
from napari_pathreview.io.images import IMAGE_SUFFIXES  # what the reader opens: the one list


class QueueSourceError(InvalidInputError):
    """The folder or CSV given as a work queue holds no usable image paths."""


def images_in_folder(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name so the order is stable across sessions."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QueueSourceError(f"{folder} is not a folder; choose a folder of images or a CSV.")
    paths = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise QueueSourceError(
            f"{folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "choose another folder or a CSV with a 'path' column."
        )
    return paths


def images_in_csv(csv_path: Path) -> list[Path]:
    """Paths from a CSV's ``path`` column, relative paths resolved against the CSV's folder.

    This is the manifest format training reads and the review export writes, so a
    reviewer can queue exactly the images a model was evaluated on.
    """
    csv_path = Path(csv_path)
    header, table = read_csv_rows(csv_path, "queue CSV", QueueSourceError)
    if "path" not in header:
        raise QueueSourceError(
            f"{csv_path} has no 'path' column; the queue CSV needs one image path per row."
        )
    rows = [row["path"].strip() for row in table if (row.get("path") or "").strip()]
    if not rows:
        raise QueueSourceError(f"{csv_path} lists no image paths.")
    paths = []
    for entry in rows:
        path = Path(entry)
        paths.append(path if path.is_absolute() else (csv_path.parent / path).resolve())
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise QueueSourceError(
            f"{len(missing)} of {len(paths)} paths in {csv_path} do not exist "
            f"(first: {missing[0]}); fix the CSV or its folder."
        )
    return paths


def queue_paths(source: str | Path) -> list[Path]:
    """The images of a queue source: a ``.csv`` file's ``path`` column, else a folder's images."""
    source = Path(source)
    if source.suffix.lower() == ".csv" and not source.is_dir():
        return images_in_csv(source)
    return images_in_folder(source)
