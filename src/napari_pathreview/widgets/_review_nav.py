"""The Review widget's navigation: the work queue and loading its images in a worker.

A mixin of :class:`~napari_pathreview.widgets.review.ReviewWidget` (it uses the widget's
form, store and ``image_opened`` signal). Building the queue (reading the store, ordering,
hashing) and reading and hashing the next image run in napari workers, so neither opening a
queue nor *Next* blocks the UI; only adding the finished layers happens in the main thread.
The progress count reads the store in the store thread. Leaving an image with unsaved entries
asks first (Save / Discard / Stay).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, LineEdit
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

from napari_pathreview.review.records import file_sha256
from napari_pathreview.widgets import _recall, _results
from napari_pathreview.widgets._common import _Failed, failure_returned, guard_triton_import
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._notify import notify_exception, show_info
from napari_pathreview.widgets._queue import QUEUE_ORDER_CHOICES, WorkQueue, reviewed_hashes
from napari_pathreview.widgets._store_thread import wait_in_store_thread

logger = logging.getLogger(__name__)

NEXT_KEY, PREVIOUS_KEY = "Alt-Right", "Alt-Left"
SAVE, DISCARD, STAY = "save", "discard", "stay"


def read_item(path: Path, to_hash: Sequence[Path] = ()) -> tuple[Path, list[Any], dict[Path, str]]:
    """Read ``path`` into napari layers and hash it (and ``to_hash``), in a worker thread.

    The layers are built here but not added: building one costs as much as reading the file
    the first time (napari sets up units and colour maps), and none of it needs the viewer.
    The queue's progress count needs every image's hash; they are computed here too.
    """
    from napari_pathreview._reader import read_paths
    from napari_pathreview.widgets._hole_outlines import layers_with_hole_outlines

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is gone (moved or deleted since the queue was opened)")
    data = [item for item in read_paths(str(path)) if item and item[0] is not None]
    others = {p for p in map(Path, to_hash) if p.is_file()}  # another gone file: not this one's
    hashes = {p: file_sha256(p) for p in {Path(path), *others}}
    layers = layers_with_hole_outlines(data)  # an ROI with holes comes with their outlines
    for layer in layers:  # the layer will be reused: its hash says which image it shows
        if _results.is_image(layer):
            _tag_sha256(layer, hashes[Path(path)])
    return path, layers, hashes


def _tag_sha256(layer: Any, sha256: str) -> None:
    """Note the file's hash on an image layer (``_recall``: what a prediction is kept under)."""
    meta = plugin_meta(layer)
    meta[_recall.SHA_KEY] = sha256
    with layer.events.metadata.blocker():  # the same image: nothing to reload
        layer.metadata = {**layer.metadata, "pathreview": meta}


def prepare_queue(
    store: Any, reviewer: str, source: Path, order: str, model: str | None
) -> WorkQueue:
    """Build the work queue in a worker thread: the store's reviews, the order, the hashes.

    An active-learning order scores every image with ``model`` (``review.ordering``), and
    resuming hashes images up to the first unreviewed one: neither belongs on the GUI thread.
    """
    done = reviewed_hashes(store.reviews(reviewer=reviewer))
    rois = None
    if order == "roi_disagreement":
        from napari_pathreview.review.ordering import reviewer_rois

        rois = reviewer_rois(store)
    return WorkQueue.from_source(source, done, order, model, rois)


def _reusable(old: Any, new: Any) -> bool:
    """Whether image layer ``old`` can show ``new``'s data (same kind, channels, levels)."""
    if not (_results.is_image(old) and _results.is_image(new)):
        return False
    return (old.rgb, old.multiscale, old.ndim) == (new.rgb, new.multiscale, new.ndim)


def _take_over(old: Any, new: Any) -> None:
    """Give the existing layer ``old`` the data and settings of the freshly read ``new``."""
    old.data = new.data
    old.scale, old.translate, old.units = new.scale, new.translate, new.units
    if not new.rgb:
        old.colormap = new.colormap
        old.contrast_limits = new.contrast_limits
    # the Review form reloads on the metadata event: fired before the rename, it read the new
    # file's saved review under the old name and left its ROI as the other image's
    with old.events.metadata.blocker():
        old.metadata = dict(new.metadata)
    old.name = new.name
    old.events.metadata(value=old.metadata)
    old.visible = True


class QueueNavigation:
    """The work queue for the Review widget (a mixin)."""

    queue: WorkQueue | None = None
    loading: Any = None
    saving: bool = False  # a review is being written: navigation waits for it
    loaded_path: Path | None = None
    failed_path: Path | None = None  # the last image the queue could not open
    prediction_memory: _recall.PredictionMemory | None = None  # shared with Analyze (workspace)
    _queue_layers: list[Any]
    _hashes: dict[Path, str]

    def init_navigation(self, layout: QVBoxLayout) -> None:
        self._queue_layers = []
        self._hashes = {}
        self.queue_source: Path | None = None
        layout.addWidget(self._build_queue_box())

    def _build_queue_box(self) -> QGroupBox:
        box = QGroupBox("Work queue")
        layout = QVBoxLayout(box)
        open_row, nav_row = QHBoxLayout(), QHBoxLayout()
        for text, slot in (("Open folder…", self._choose_folder), ("Open CSV…", self._choose_csv)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            open_row.addWidget(button)
        self.previous_button = QPushButton("◀ Prev (Alt+←)")
        self.next_button = QPushButton("Next (Alt+→) ▶")
        self.previous_button.clicked.connect(self.previous_item)
        self.next_button.clicked.connect(self.next_item)
        nav_row.addWidget(self.previous_button)
        nav_row.addWidget(self.next_button)
        self.progress_label = QLabel("no queue open")
        self.progress_label.setWordWrap(True)
        self.queue_order = ComboBox(label="order", choices=QUEUE_ORDER_CHOICES, value="file name")
        self.queue_model = LineEdit(label="by model", value="")
        self.queue_model.native.setPlaceholderText("NAME[@VERSION] for active-learning orders")
        order_row = QHBoxLayout()
        order_row.addWidget(QLabel("Order:"))
        order_row.addWidget(self.queue_order.native)
        order_row.addWidget(self.queue_model.native)
        layout.addLayout(order_row)
        layout.addLayout(open_row)
        layout.addLayout(nav_row)
        layout.addWidget(self.progress_label)
        return box

    def sha256_of(self, path: Path) -> str:
        """The store key of ``path``, hashed once per session."""
        if path not in self._hashes:
            self._hashes[path] = file_sha256(path)
        return self._hashes[path]

    # ------------------------------------------------------------------ queue
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to review")
        if folder:
            self.load_queue(folder)

    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CSV with a 'path' column", "", "CSV (*.csv)")
        if path:
            self.load_queue(path)

    def load_queue(
        self, source: str | Path, index: int | None = None, at: Path | None = None
    ) -> Any:
        """Open a queue over a folder or CSV at the first image this reviewer has not done
        (or at position ``index``; or at image ``at`` when the queue holds it).

        Reading the store, scoring an active-learning order and hashing run in a worker;
        returns it (``self.queue`` is set when it returns), or None if the store is unusable.
        """
        from napari.qt.threading import create_worker

        try:
            store = wait_in_store_thread(self.store)
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Work queue")
            return None
        order, model = str(self.queue_order.value), self.queue_model.value.strip() or None
        if order != "file name":
            guard_triton_import()  # the order loads a model in the worker
        self.next_button.setEnabled(False)
        self.previous_button.setEnabled(False)
        self.progress_label.setText(
            "reading the queue…" if order == "file name" else f"ordering the queue by {order}…"
        )
        reviewer = self.reviewer.value.strip()
        worker = create_worker(
            failure_returned,
            prepare_queue,
            store,
            reviewer,
            Path(source),
            order,
            model,
            _start_thread=False,
        )
        worker.returned.connect(lambda queue: self._queue_ready(queue, Path(source), index, at))
        self.loading = worker
        worker.start()
        return worker

    def _queue_ready(
        self, queue: WorkQueue | _Failed, source: Path, index: int | None, at: Path | None = None
    ) -> None:
        if isinstance(queue, _Failed):
            self._queue_failed(queue.error)
            return
        if at is not None and at in queue.paths:
            queue.index = queue.paths.index(at)
        elif index is not None:
            queue.index = max(0, min(int(index), len(queue) - 1))
        self.queue = queue
        self.queue_source = source
        self.open_path(queue.current)

    def _queue_failed(self, error: Exception) -> None:
        notify_exception(error, "Work queue")
        self._loading_done()
        if self.queue is None:
            self.progress_label.setText("no queue open")

    def refresh_progress(self, *_: Any) -> None:
        """Re-read this reviewer's reviews and update '12 of 80 reviewed'."""
        if self.queue is None:
            return
        reviewer = self.reviewer.value.strip()
        try:
            reviews = wait_in_store_thread(lambda: self.store().reviews(reviewer=reviewer))
            if self.queue is not None:  # closed while it was read
                self.queue.set_reviewed(reviewed_hashes(reviews))
        except Exception as error:  # noqa: BLE001 - notified; the old count stays
            notify_exception(error, "Work queue")
        self._show_progress()

    def _show_progress(self, note: str = "") -> None:
        queue = self.queue
        if queue is None:
            return
        mark = " ✓" if queue.is_reviewed(queue.current) else ""
        self.progress_label.setText(
            f"{queue.progress_text()} · {queue.position_text()}: {queue.current.name}{mark}{note}"
        )

    def confirm_leave(self) -> bool:
        """Ask what to do with unsaved entries; True when it is fine to move on."""
        if not self.has_unsaved_changes():
            return True
        box = QMessageBox(self)
        box.setWindowTitle("Unsaved review")
        box.setText("This image's review has unsaved changes. Save them before moving on?")
        save = box.addButton("Save", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Stay", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        clicked = box.clickedButton()
        if clicked is save:
            return self.save() is not None
        if clicked is discard:
            self._state = self.form_state()  # dropped on purpose: do not ask again
            return True
        return False

    def next_item(self) -> Any:
        """Show the next image of the queue (Alt+→); returns the loading worker."""
        queue = self.queue
        if queue is None or self.saving or not self.confirm_leave():
            return None
        if queue.index >= len(queue) - 1:
            left = len(queue) - queue.reviewed_count
            message = f"End of the queue: {queue.progress_text()}" + (
                f"; {left} still to review (press Prev to go back)." if left else "."
            )
            show_info(message)
            self._show_progress(" — end of the queue")
            return None
        queue.next()
        return self.open_path(queue.current)

    def previous_item(self) -> Any:
        """Show the previous image of the queue (Alt+←); returns the loading worker."""
        if self.queue is None or self.saving or not self.confirm_leave():
            return None
        self.queue.previous()
        return self.open_path(self.queue.current)

    def open_path(self, path: Path) -> Any:
        """Read ``path`` in a worker, then replace the previous queue image with it."""
        from napari.qt.threading import create_worker

        self.next_button.setEnabled(False)
        self.previous_button.setEnabled(False)
        self.progress_label.setText(f"opening {Path(path).name}…")
        pending = [] if self.queue is None else self.queue.unhashed()
        worker = create_worker(
            failure_returned, read_item, Path(path), pending, _start_thread=False
        )
        worker.returned.connect(lambda loaded: self._on_loaded(loaded, Path(path)))
        worker.finished.connect(self._loading_done)
        self.loading = worker
        worker.start()
        return worker

    def _loading_done(self) -> None:
        self.next_button.setEnabled(True)
        self.previous_button.setEnabled(True)
        failed = self.queue is not None and self.failed_path == self.queue.current
        self._show_progress(" — cannot be opened; still showing the last image" if failed else "")

    def _on_loaded(
        self, loaded: tuple[Path, list[Any], dict[Path, str]] | _Failed, asked: Path
    ) -> None:
        if isinstance(loaded, _Failed):
            self.failed_path = asked
            notify_exception(loaded.error, f"Cannot open {asked.name}; skip it")
            return
        self.failed_path = None
        path, layers, hashes = loaded
        self._hashes.update(hashes)
        if self.queue is not None:
            self.queue.remember_hashes(hashes)
        adopted = self._already_open(path)
        if adopted is not None:  # opened by hand or by a restored session: use that one
            self._replace_queue_layers([])
            _tag_sha256(adopted, hashes[Path(path)])
            self._queue_layers = [adopted]
            self._show_image(adopted.name, path)
            return
        images = [layer for layer in layers if _results.is_image(layer)]
        for layer in layers:
            if images and _results.is_roi_layer(layer):
                meta = plugin_meta(layer)
                meta["image"] = images[0].name
                layer.metadata["pathreview"] = meta
        self._queue_layers = self._replace_queue_layers(layers)
        if not images:
            notify_exception(FileNotFoundError(path), f"No image read from {path.name}")
            return
        self._show_image(images[0].name, path)

    def _replace_queue_layers(self, layers: list[Any]) -> list[Any]:
        """Swap the previous queue image for ``layers``, reusing its layer where it can.

        napari runs a full garbage collection on every layer removal (over a second with
        torch loaded, the UI frozen), so an image layer of the same kind takes the new
        image's data instead of being removed and re-added.
        """
        old = [layer for layer in self._queue_layers if layer in self.viewer.layers]
        shown = []
        for new in layers:
            match = next((o for o in old if _reusable(o, new)), None)
            if match is not None:
                old.remove(match)
                self._remember_prediction(match)
                _take_over(match, new)
                shown.append(match)
            else:
                shown.append(None)
        if old:
            with self.viewer.layers.batched_update():  # one clean-up for all of them
                for layer in old:
                    self.viewer.layers.remove(layer)
        shown = [
            s if s is not None else self.viewer.add_layer(n)
            for s, n in zip(shown, layers, strict=True)
        ]
        for layer in self.viewer.layers:  # results of the image that left: hidden, reused later
            meta = plugin_meta(layer)
            if (
                meta.get("kind")
                and meta.get("image")
                and not _results.image_shown(self.viewer, meta)
            ):
                layer.visible = False
        return shown

    def _remember_prediction(self, layer: Any) -> None:
        """Keep the prediction of the image leaving ``layer`` for when the reviewer comes back."""
        meta = plugin_meta(layer)
        sha, prediction = _recall.image_sha256(layer), meta.get("prediction")
        if self.prediction_memory is not None and sha and prediction:
            self.prediction_memory.remember(sha, prediction)

    def _already_open(self, path: Path) -> Any:
        for layer in self.viewer.layers:
            meta = plugin_meta(layer)
            source = meta.get("source_path")
            is_open = source and Path(source) == Path(path) and meta.get("kind") is None
            if is_open and _results.is_image(layer):
                return layer
        return None

    def _show_image(self, name: str, path: Path) -> None:
        self.reset_choices()
        self.image_combo.value = name
        self.viewer.layers.selection.active = self.viewer.layers[name]
        self.loaded_path = path
        self._show_progress()
        self.image_opened.emit(name)
