"""A reviewer's work queue over a folder of images or a CSV manifest, with no Qt in it.

The queue holds no state of its own on disk: which items are done is derived from the
review store (the reviews a reviewer saved, keyed by the image's sha256), so a reviewer
who closes napari and comes back resumes at the first image they have not reviewed yet,
and a second machine sharing a PostgreSQL store sees the same progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.review.queue_source import queue_paths
from napari_pathreview.review.records import file_sha256


@dataclass
class WorkQueue:
    """An ordered list of images with a cursor and the set of those already reviewed.

    Args:
        paths: the images in review order.
        reviewed: sha256 keys of images the reviewer has already reviewed.
    """

    paths: list[Path]
    reviewed: set[str] = field(default_factory=set)
    index: int = 0
    _hashes: dict[Path, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_source(
        cls,
        source: str | Path,
        reviewed: Iterable[str] = (),
        order: str = "file name",
        model: str | None = None,
        rois: dict | None = None,
    ) -> WorkQueue:
        """A queue over a folder (its images) or a ``.csv`` (its ``path`` column), in ``order``.

        See :func:`order_paths`; ``model`` and reviewer ``rois`` serve the active-learning orders.
        """
        paths = order_paths(queue_paths(source), order, model, rois)
        queue = cls(paths=paths, reviewed=set(reviewed))
        queue.resume()
        return queue

    def __len__(self) -> int:
        return len(self.paths)

    def unhashed(self) -> list[Path]:
        """The paths whose hash is not known yet (a worker can compute them)."""
        return [p for p in self.paths if p not in self._hashes]

    def remember_hashes(self, hashes: dict[Path, str]) -> None:
        """Hashes computed elsewhere (in a worker thread) for paths of this queue."""
        self._hashes.update({p: h for p, h in hashes.items() if p in set(self.paths)})

    def sha256(self, path: Path) -> str:
        """The store key of ``path``, hashed once and cached."""
        if path not in self._hashes:
            self._hashes[path] = file_sha256(path)
        return self._hashes[path]

    @property
    def current(self) -> Path:
        """The image under the cursor."""
        return self.paths[self.index]

    def is_reviewed(self, path: Path) -> bool:
        """Whether the reviewer already saved a review of ``path``."""
        return self.sha256(path) in self.reviewed

    @property
    def reviewed_count(self) -> int:
        """How many images of this queue have a review (reviews of other images do not count)."""
        return sum(self.is_reviewed(p) for p in self.paths)

    def progress_text(self) -> str:
        """'12 of 80 reviewed', what the widget shows above the queue buttons."""
        return f"{self.reviewed_count} of {len(self)} reviewed"

    def set_reviewed(self, hashes: Iterable[str]) -> None:
        """Replace the reviewed set, e.g. after re-reading the store."""
        self.reviewed = set(hashes)

    def mark_reviewed(self, sha256: str) -> None:
        """Record that an image was just reviewed (saves a round trip to the store)."""
        self.reviewed.add(sha256)

    def resume(self) -> Path:
        """Move to the first image not yet reviewed (the last one if all are done)."""
        for i, path in enumerate(self.paths):
            if not self.is_reviewed(path):
                self.index = i
                return path
        self.index = len(self.paths) - 1
        return self.current

    def next(self) -> Path:
        """Step forward one image (stays on the last)."""
        self.index = min(self.index + 1, len(self.paths) - 1)
        return self.current

    def previous(self) -> Path:
        """Step back one image (stays on the first)."""
        self.index = max(self.index - 1, 0)
        return self.current

    def next_unreviewed(self) -> Path:
        """The next image after the cursor without a review, wrapping round; the cursor if none."""
        n = len(self.paths)
        for step in range(1, n + 1):
            i = (self.index + step) % n
            if not self.is_reviewed(self.paths[i]):
                self.index = i
                return self.current
        return self.current

    def position_text(self) -> str:
        """'Image 3 / 80', shown beside the file name."""
        return f"Image {self.index + 1} / {len(self)}"


#: The work queue's orders: file name, or active learning (``review.ordering``) with a model.
QUEUE_ORDER_CHOICES: tuple[str, ...] = (
    "file name",
    "uncertainty",
    "tta_disagreement",
    "roi_disagreement",
)


def order_paths(
    paths: Sequence[Path],
    order: str,
    model: str | None = None,
    rois: dict | None = None,
    tta: str = "flips",
) -> list[Path]:
    """``paths`` in the chosen order: as given for "file name", else most informative first
    by ``model`` (see ``review.ordering``; the same scores as ``pathreview review queue``).

    Raises:
        ModalityMismatchError: ``model`` is of the other modality than some of the images
            (its scores over them would order the queue by noise).
    """
    if order == "file name":
        return list(paths)
    if order not in QUEUE_ORDER_CHOICES:
        raise InvalidInputError(f"queue order {order!r} is not one of {QUEUE_ORDER_CHOICES}")
    if not model:
        raise InvalidInputError(f"ordering the queue by {order} needs a model (NAME[@VERSION])")
    from napari_pathreview import preflight
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.review.ordering import order_images

    preflight.check_modalities(preflight.model_card(model), paths, override=None)
    predictor = Predictor.from_registry(model, device="cpu")
    return [entry.path for entry in order_images(predictor, paths, order, tta, rois)]


def reviewed_hashes(records: Sequence[object]) -> set[str]:
    """The image keys of review records, whatever the record calls its sha256 field."""
    hashes = set()
    for record in records:
        for attr in ("image_sha256", "sha256"):
            value = getattr(record, attr, None)
            if value:
                hashes.add(str(value))
                break
    return hashes
