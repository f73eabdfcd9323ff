"""What earlier runs left in a cohort's output folder, and what this run makes of it.

``slides.csv`` rows and each result's ``meta`` (written by ``cohort.slide_task``) decide, per
slide, its folder under ``slides/`` (:func:`stems`) and whether it is finished (skipped), changed
since its result was written (run again, and said so), or new (:func:`plan_run`).

A row and result written before the key covered the slide's files (``CohortJob.legacy_key``:
path and size only, no ``slide_state`` in the meta) are kept when no file of the slide was
modified after the result was written (``tiles.geojson``'s time), and given the current key so
later runs judge them by it; otherwise the slide runs again as changed. An upgrade therefore
re-runs no untouched cohort, and catches a slide replaced after its result in the common case
(a copy that kept an older modification time cannot be told from the original by that rule).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_pathreview._atomic import atomic_path
from napari_pathreview.inference.cache import is_partial
from napari_pathreview.io.slide_files import modified_after, slide_state

__all__ = ["Plan", "Tables", "plan_run", "read_rows", "result_meta", "stems"]

logger = logging.getLogger(__name__)


def result_meta(folder: Path) -> dict[str, Any]:
    """The ``meta`` a slide task stored with its result (empty when none is readable)."""
    import zarr

    store = folder / "result.zarr"
    if not store.is_dir():
        return {}
    try:
        meta = zarr.open_group(str(store), mode="r").attrs.get("meta")
    except (OSError, ValueError, KeyError, zarr.errors.BaseZarrError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _set_meta(folder: Path, meta: dict[str, Any]) -> None:
    import zarr

    zarr.open_group(str(folder / "result.zarr"), mode="r+").attrs["meta"] = meta


def _owner(meta: dict[str, Any], out: Path) -> str | None:
    """The resolved slide path a result was written for (older results: only ``path``, a
    relative one read relative to ``out``, as :func:`_row_file` reads rows)."""
    named = meta.get("file") or meta.get("path")
    return str((out / named).resolve()) if named else None


def _row_file(row: dict[str, str], out: Path) -> str:
    """A ``slides.csv`` row's slide, resolved: rows hold absolute paths; a relative one (rows
    of older versions held the path as typed, or one edited by hand) is read relative to the
    CSV's folder, never to wherever this run was started."""
    return str((out / row["path"]).resolve())


def stems(
    paths: Sequence[Path],
    keys: Sequence[tuple[str, ...]],
    out: Path,
    rows: Sequence[dict[str, str]],
) -> list[str]:
    """Each slide's folder under ``out/slides``: the one an earlier run gave that file, else
    its stem, suffixed ``-2``, ``-3``… while another file owns that name (a result folder on
    disk, a ``slides.csv`` row, or an earlier slide of this run), so ``a/s1.tif`` and
    ``b/s1.tif`` never share a folder, whichever run or order they come in.

    ``keys``: each slide's own keys (the current and the legacy one). A row holding one of
    them names its folder whatever its ``path`` says (older versions wrote the path as typed,
    relative to the folder that run started in), so a cohort resumes from any working folder."""
    owners: dict[str, str] = {}
    for row in rows:
        if row.get("slide") and row.get("path"):
            owners[row["slide"]] = _row_file(row, out)
    root = out / "slides"
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        if is_partial(folder):
            continue
        if owner := _owner(result_meta(folder), out):
            owners[folder.name] = owner  # the folder's own record wins over a row's
    by_key = {row["key"]: row["slide"] for row in rows if row.get("slide")}
    names = []
    for path, own in zip(paths, keys, strict=True):
        me = str(path.resolve())
        for key in own:
            if key in by_key:
                owners[by_key[key]] = me
        name = next((n for n, o in owners.items() if o == me), None)
        if name is None:
            name, n = path.stem, 1
            while name in owners:
                n += 1
                name = f"{path.stem}-{n}"
            owners[name] = me
        names.append(name)
    return names


def read_rows(path: Path) -> list[dict[str, str]]:
    """``slides.csv``'s rows; a row without its slide, path or key (a damaged line) is
    dropped with a warning, so that slide simply runs again."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    good = [r for r in rows if r.get("slide") and r.get("path") and r.get("key")]
    if len(good) < len(rows):
        logger.warning("%s: %d damaged row(s) ignored", path, len(rows) - len(good))
    return good


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the table whole, then move it into place: a kill mid-write leaves the old one."""
    header: list[str] = []
    for row in rows:
        header.extend(k for k in row if k not in header)
    with atomic_path(path) as partial, partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header or ["slide"])
        writer.writeheader()
        writer.writerows(rows)


class Tables:
    """``slides.csv`` and ``failures.csv``, written again after every slide that ends.

    ``kept``: earlier runs' rows; ``refused``: what the folders held that is not used, the
    first rows of ``failures.csv``.
    """

    def __init__(
        self,
        slides_csv: Path,
        failures_csv: Path,
        kept: list[dict[str, Any]],
        refused: list[dict[str, str]],
    ):
        self.slides_csv, self.failures_csv = slides_csv, failures_csv
        self.kept, self.refused = kept, refused

    def save(self, rows: list[dict[str, Any]], failures: list[dict[str, str]]) -> None:
        _write_rows(self.slides_csv, self.kept + rows)
        _write_rows(self.failures_csv, self.refused + failures)


@dataclass
class Plan:
    """What a run does with each slide: ``todo`` (path, folder name) to run, ``skipped``
    (finished), ``changed`` (in ``todo``: its files changed since its result), and the earlier
    rows to ``kept`` (those of slides not run again)."""

    todo: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept: list[dict[str, str]] = field(default_factory=list)


def plan_run(paths: Sequence[Path], job: Any, out: Path, earlier: list[dict[str, str]]) -> Plan:
    """Sort the slides into finished, changed and new (module docstring); upgrades the key of
    a legacy row and result found finished. ``job`` is the run's ``cohort.CohortJob`` (typed
    ``Any``: cohort imports this module)."""
    states = [slide_state(p) for p in paths]
    keys = [job.key_for(p, s) for p, s in zip(paths, states, strict=True)]
    legacy = [job.legacy_key(p) for p in paths]
    names = stems(paths, list(zip(keys, legacy, strict=True)), out, earlier)
    rows_by_key = {r["key"]: r for r in earlier}
    plan = Plan()
    for path, state, key, old, stem in zip(paths, states, keys, legacy, names, strict=True):
        folder = out / "slides" / stem
        meta = result_meta(folder)
        if key in rows_by_key and meta.get("key") == key:
            plan.skipped.append(str(path))
            continue
        if old in rows_by_key and meta.get("key") == old and "slide_state" not in meta:
            if not _changed_since(path, folder):
                rows_by_key[old]["key"] = key
                _set_meta(folder, {**meta, "key": key, "slide_state": state})
                plan.skipped.append(str(path))
                continue
            plan.changed.append(str(path))
        elif _same_run_other_files(meta, path, state, job):
            plan.changed.append(str(path))
        plan.todo.append((path, stem))
    for slide in plan.changed:
        logger.warning("%s changed since its earlier result was written: running it again", slide)
    rerun = {stem for _, stem in plan.todo}
    plan.kept = [r for r in earlier if r["slide"] not in rerun]
    return plan


def _changed_since(path: Path, folder: Path) -> bool:
    """Whether a file of the slide was modified after the result in ``folder`` was written
    (or that time cannot be read)."""
    try:
        written = (folder / "tiles.geojson").stat().st_mtime_ns
    except OSError:
        return True
    return bool(modified_after(path, written))


def _same_run_other_files(meta: dict[str, Any], path: Path, state: str, job: Any) -> bool:
    """The result was written by this job for this slide path, from files in another state."""
    earlier = meta.get("slide_state")
    return bool(earlier) and earlier != state and meta.get("key") == job.key_for(path, earlier)
