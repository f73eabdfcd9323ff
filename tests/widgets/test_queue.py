"""The work queue: folder and CSV sources, navigation, and resume from reviewed hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.review.records import file_sha256
from napari_pathreview.widgets._queue import WorkQueue, reviewed_hashes


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    (folder / "notes.txt").write_text("not an image")
    return paths


def test_folder_queue_lists_images_in_name_order(tmp_path: Path) -> None:
    paths = _images(tmp_path / "imgs", 4)
    queue = WorkQueue.from_source(tmp_path / "imgs")
    assert queue.paths == paths
    assert queue.progress_text() == "0 of 4 reviewed"


def test_csv_queue_resolves_paths_relative_to_the_csv(tmp_path: Path) -> None:
    paths = _images(tmp_path / "data" / "imgs", 3)
    csv = tmp_path / "data" / "queue.csv"
    csv.write_text("path,label\nimgs/img_02.png,benign\nimgs/img_00.png,malignant\n")
    queue = WorkQueue.from_source(csv)
    assert queue.paths == [paths[2].resolve(), paths[0].resolve()]


def test_csv_without_path_column_is_refused(tmp_path: Path) -> None:
    csv = tmp_path / "q.csv"
    csv.write_text("file,label\na.png,benign\n")
    with pytest.raises(InvalidInputError, match="'path' column"):
        WorkQueue.from_source(csv)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no image files"):
        WorkQueue.from_source(tmp_path / "empty")


def test_queue_resumes_at_first_unreviewed_image(tmp_path: Path) -> None:
    paths = _images(tmp_path / "imgs", 5)
    done = {file_sha256(paths[0]), file_sha256(paths[1]), file_sha256(paths[3])}
    queue = WorkQueue.from_source(tmp_path / "imgs", reviewed=done)
    assert queue.current == paths[2]
    assert queue.progress_text() == "3 of 5 reviewed"
    assert queue.next_unreviewed() == paths[4]
    assert queue.next_unreviewed() == paths[2]  # wraps round past the reviewed ones


def test_next_and_previous_stop_at_the_ends(tmp_path: Path) -> None:
    paths = _images(tmp_path / "imgs", 2)
    queue = WorkQueue.from_source(tmp_path / "imgs")
    assert queue.previous() == paths[0]
    assert queue.next() == paths[1]
    assert queue.next() == paths[1]
    assert queue.position_text() == "Image 2 / 2"


def test_sha256_matches_the_store_key(tmp_path: Path) -> None:
    path = _images(tmp_path / "imgs", 1)[0]
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()

    class Record:
        image_sha256 = "abc"

    assert reviewed_hashes([Record()]) == {"abc"}
