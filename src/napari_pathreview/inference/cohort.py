"""Cohort runs: one task per slide on Dask distributed, a local cluster or a running one.

Each task opens its slide, runs the slide engine (``slides.iter_slide``) with a predictor the
worker keeps between tasks, and writes ``slides/<stem>/`` (result.zarr + tiles.geojson) under
the output folder. The driver collects one row of slide-level aggregates per slide into
``slides.csv`` and one row per failed slide into ``failures.csv`` (after a row for each thing
a given folder holds that looks like a slide but is not used, see ``io.slide_folders``),
rewritten after every slide so an interrupted run keeps what it finished; a failing slide
never stops the others, and slides already in ``slides.csv`` whose folder holds that run's
result are skipped (``slides.csv`` holds absolute paths; a relative one is read relative to
its folder). A slide's folder is named once (its stem, ``-2``… when another file of
that name has one) and kept by later runs.
``workers=0`` runs the same tasks in this process (no Dask), which the tests compare against.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_pathreview.errors import InvalidInputError, PathReviewError
from napari_pathreview.inference.cache import is_partial, remove_stale_partials

if TYPE_CHECKING:
    from napari_pathreview.io.slide_folders import SlideList

__all__ = [
    "CohortJob",
    "CohortSummary",
    "SchedulerUnreachableError",
    "default_workers",
    "run_cohort",
    "slide_task",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
"""Seconds to wait for a scheduler address to answer before giving up."""


class SchedulerUnreachableError(PathReviewError):
    """No Dask scheduler answered at the given address."""


@dataclass(frozen=True)
class CohortJob:
    """What every slide task needs (picklable: it travels to the workers).

    Attributes:
        model_ref: ``NAME`` or ``NAME@VERSION`` in the registry.
        out: Output folder.
        settings: ``slides.SlideSettings`` as a dict.
        device, tta: Predictor settings (None: the card's).
        stain: None (the card's), a method name, or a fitted target's state (``--stain-target``),
            which is part of :meth:`slide_key`: another target is another result.
        home: ``$PATHREVIEW_HOME`` the workers read the registry from.
    """

    model_ref: str
    out: str
    settings: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    stain: str | dict[str, Any] | None = None
    tta: str | None = None
    home: str | None = None

    def slide_key(self, path: Path) -> str:
        """Identifies (slide file, model, settings, stain target) so re-runs skip finished
        slides, and only those run with the same settings."""
        stat = path.stat() if path.exists() else None
        size = stat.st_size if stat else None
        parts = [str(path.resolve()), size, self.model_ref, self.settings, self.stain, self.tta]
        return _digest(parts, 16)


def _digest(value: Any, length: int) -> str:
    """The first ``length`` hex digits of the sha256 of ``value``'s canonical JSON."""
    text = json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class CohortSummary:
    """What a cohort run did: rows written, slides skipped as finished, failures."""

    rows: list[dict[str, Any]]
    skipped: list[str]
    failures: list[dict[str, str]]
    slides_csv: Path
    failures_csv: Path


def default_workers() -> int:
    """One worker per GPU, else one per four CPU cores (each worker runs torch's own threads)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return max(1, (os.cpu_count() or 1) // 4)


@functools.lru_cache(maxsize=2)
def _worker_predictor(
    model_ref: str, device: str, stain_json: str, tta: str | None, home: str | None
):
    """A predictor per worker process and model, loaded once and reused across its slides.

    ``stain_json``: the job's ``stain`` as JSON text, hashable for the cache even when it is a
    fitted target's state.
    """
    if home:
        os.environ["PATHREVIEW_HOME"] = home
    from napari_pathreview.inference.predictor import Predictor

    stain = json.loads(stain_json)
    return Predictor.from_registry(model_ref, device=device, stain=stain, tta=tta, qc=False)


def _worker_device(device: str) -> str:
    """On a multi-GPU machine, local worker N takes GPU N mod count (one worker per GPU)."""
    if device not in ("auto", "cuda"):
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not on a Dask worker
        return device
    index = name if isinstance(name, int) else sum(map(ord, str(name)))
    return f"cuda:{index % count}"


def _row(
    path: Path, stem: str, key: str, result: Any, decided: Any, stain: str, target: str
) -> dict[str, Any]:
    """The slides.csv row; ``decided``: the slide's ``Prediction`` (``slides.slide_prediction``,
    as the Analyze dock decides), ``stain``: the method applied, ``target``: the id of the
    fitted target applied (``stain.targets.target_id``: a --stain-target's or the card's)."""
    row: dict[str, Any] = {
        "slide": stem,
        "path": os.path.abspath(path),  # absolute: a later run from any folder finds it
        "key": key,
        "model": result.model_ref,
        "stain": stain,
        "stain_target": target,
        "um_per_px": result.grid.um_per_px,
        "n_tiles": int(len(result.tile_probabilities)),
        "n_failed_tiles": int(result.n_failed),
        # unmeasured with --no-tissue: an empty cell, never "nan"
        "tissue_area_mm2": round(area, 6) if math.isfinite(area := result.tissue_area_mm2) else "",
        "predicted_label": decided.label,
        "threshold": "" if decided.threshold is None else decided.threshold,
    }
    # a patch MIL model decides on its own pooling of all tiles: those probabilities first
    pooled = ("mil",) if "mil" in result.aggregate else ()
    for how in (*pooled, "mean", "max", "topk_mean"):
        for name, value in result.aggregate[how].items():
            row[f"{how}_{name}"] = round(float(value), 6)
    row["seconds"] = round(float(result.seconds), 3)
    row["tiles_per_s"] = round(float(result.tiles_per_s), 2)
    return row


def slide_task(path: str, stem: str, job: CohortJob) -> dict[str, Any]:
    """Run one slide (on a worker or here): writes ``out/slides/<stem>`` and returns its row."""
    from napari_pathreview.inference.cache import write_result
    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.slides import SlideSettings, predict_slide, slide_prediction
    from napari_pathreview.stain.targets import target_id

    settings = SlideSettings(**job.settings)
    slide_um = settings.slide_um_per_px
    device = _worker_device(job.device)
    stain_json = json.dumps(job.stain, sort_keys=True)
    predictor = _worker_predictor(job.model_ref, device, stain_json, job.tta, job.home)
    source = as_slide(Path(path), um_per_px=slide_um)
    try:
        result = predict_slide(predictor, source, settings)
    finally:
        source.close()
    decided = slide_prediction(predictor, result)
    key = job.slide_key(Path(path))
    meta = {"key": key, "path": str(path), "file": str(Path(path).resolve())}
    write_result(Path(job.out) / "slides" / stem, result, meta=meta)
    applied = target_id(predictor.normalizer)
    return _row(Path(path), stem, key, result, decided, predictor.stain_name, applied)


def _slide_outcome(path: str, stem: str, job: CohortJob) -> dict[str, Any] | PathReviewError:
    """:func:`slide_task` as a Dask task: a slide refused for a reason the user can act on
    comes back as its error instead of raising, because Dask logs every raising task as
    "Compute Failed" with a worker traceback, which buried the one-line failure (a bug's
    exception still raises, traceback and all)."""
    try:
        return slide_task(path, stem, job)
    except PathReviewError as error:
        return error


def expand_slides(items: Iterable[str | Path]) -> list[Path]:
    """The slides that files and folders stand for (``io.slide_folders``: a folder's slide
    files and DICOM WSI series).

    Raises:
        InvalidInputError: No slide at all; names what the folders held that was refused.
    """
    return _expanded(items).slides


def _expanded(items: Iterable[str | Path]) -> SlideList:
    from napari_pathreview.io.slide_folders import expand_folders

    found = expand_folders(items)
    if not found.slides:
        refused = "; ".join(f"{r.path}: {r.why}" for r in found.refused[:5])
        raise InvalidInputError(
            "no slides given (the folders hold no slide files and no DICOM WSI series)"
            + (f"; not used: {refused}" if refused else "")
        )
    return found


def _result_meta(folder: Path) -> dict[str, Any]:
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


def _stems(
    paths: Sequence[Path], keys: Sequence[str], out: Path, rows: Sequence[dict[str, str]]
) -> list[str]:
    """Each slide's folder under ``out/slides``: the one an earlier run gave that file, else
    its stem, suffixed ``-2``, ``-3``… while another file owns that name (a result folder on
    disk, a ``slides.csv`` row, or an earlier slide of this run), so ``a/s1.tif`` and
    ``b/s1.tif`` never share a folder, whichever run or order they come in.

    A row whose ``key`` is the slide's own (the key hashes the resolved path) names its folder
    whatever its ``path`` says (older versions wrote the path as typed, relative to the folder
    that run started in), so a cohort resumes from any working folder."""
    owners: dict[str, str] = {}
    for row in rows:
        if row.get("slide") and row.get("path"):
            owners[row["slide"]] = _row_file(row, out)
    root = out / "slides"
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        if is_partial(folder):
            continue
        if owner := _owner(_result_meta(folder), out):
            owners[folder.name] = owner  # the folder's own record wins over a row's
    by_key = {row["key"]: row["slide"] for row in rows if row.get("slide")}
    stems = []
    for path, key in zip(paths, keys, strict=True):
        me = str(path.resolve())
        if key in by_key:
            owners[by_key[key]] = me
        name = next((n for n, o in owners.items() if o == me), None)
        if name is None:
            name, n = path.stem, 1
            while name in owners:
                n += 1
                name = f"{path.stem}-{n}"
            owners[name] = me
        stems.append(name)
    return stems


def _read_rows(path: Path) -> list[dict[str, str]]:
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
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header or ["slide"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def run_cohort(
    slides: Iterable[str | Path],
    job: CohortJob,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CohortSummary:
    """Run every slide once; see the module docstring for the outputs.

    Args:
        slides: Slide files or folders of them.
        job: Model, output folder and settings.
        scheduler: ``tcp://host:port`` of a running Dask scheduler; None starts a LocalCluster.
        workers: LocalCluster workers (None: :func:`default_workers`; 0: no Dask, in-process).
        progress: Show a progress bar over the cohort.

    Raises:
        SchedulerUnreachableError: ``scheduler`` did not answer within ``CONNECT_TIMEOUT_S``.
    """
    found = _expanded(slides)
    paths = found.slides
    refused = [{"path": str(r.path), "error": f"not used: {r.why}"} for r in found.refused]
    for row in refused:
        logger.warning("%s %s", row["path"], row["error"])
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    slides_csv, failures_csv = out / "slides.csv", out / "failures.csv"
    remove_stale_partials(out / "slides")
    earlier = _read_rows(slides_csv)
    done = {r["key"] for r in earlier}
    todo, skipped = [], []
    keys = [job.slide_key(path) for path in paths]
    for path, key, stem in zip(paths, keys, _stems(paths, keys, out, earlier), strict=True):
        if key in done and _result_meta(out / "slides" / stem).get("key") == key:
            skipped.append(str(path))
        else:
            todo.append((path, stem))
    if skipped:
        logger.info("skipping %d finished slide(s)", len(skipped))
    rerun = {stem for _, stem in todo}
    kept = [r for r in earlier if r["slide"] not in rerun]
    table = _Tables(slides_csv, failures_csv, kept, refused)
    rows, failures = _dispatch(todo, job, scheduler, workers, progress, table.save)
    table.save(rows, failures)  # in the order given, whatever order they finished in
    return CohortSummary(rows, skipped, refused + failures, slides_csv, failures_csv)


class _Tables:
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


def _dispatch(
    todo: list[tuple[Path, str]],
    job: CohortJob,
    scheduler: str | None,
    workers: int | None,
    progress: bool,
    save: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Run the slides; ``save(rows, failures)`` after each one ends (an interrupted run keeps
    what it finished)."""
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    bar = tqdm(total=len(todo), desc="slides", unit="slide", disable=not progress or not todo)

    def record(path: Path, outcome: Any, error: BaseException | None) -> None:
        if error is None:
            rows.append(outcome)
        else:
            logger.warning("%s failed: %s", path, error)
            failures.append({"path": str(path), "error": f"{type(error).__name__}: {error}"})
        save(rows, failures)
        bar.update(1)

    if not todo:
        bar.close()
        return rows, failures
    if workers == 0 and scheduler is None:
        for path, stem in todo:
            try:
                record(path, slide_task(str(path), stem, job), None)
            except Exception as error:  # one slide's failure must not stop the cohort
                record(path, None, error)
    else:
        _on_dask(todo, job, scheduler, workers, record)
    bar.close()
    order = {stem: i for i, (_, stem) in enumerate(todo)}
    rows.sort(key=lambda r: order[r["slide"]])
    return rows, failures


def _client(scheduler: str | None, workers: int | None) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s"), None
        except (OSError, TimeoutError) as error:
            raise SchedulerUnreachableError(
                f"no Dask scheduler answered at {scheduler} within {CONNECT_TIMEOUT_S} s "
                f"({type(error).__name__}); start one with `dask scheduler` (and "
                "`dask worker ADDRESS` on each machine) or leave out --scheduler to use a "
                "local cluster."
            ) from error
    cluster = LocalCluster(
        n_workers=workers or default_workers(),
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    return Client(cluster), cluster


def _on_dask(
    todo: list[tuple[Path, str]],
    job: CohortJob,
    scheduler: str | None,
    workers: int | None,
    record: Any,
) -> None:
    from distributed import as_completed

    client, cluster = _client(scheduler, workers)
    try:
        futures = {
            client.submit(_slide_outcome, str(path), stem, job, pure=False): path
            for path, stem in todo
        }
        for future in as_completed(futures):
            path = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # the worker's exception, re-raised here
                record(path, None, error)
                continue
            refused = isinstance(outcome, BaseException)
            record(path, None if refused else outcome, outcome if refused else None)
    finally:
        _close(client, cluster)


def _close(client: Any, cluster: Any) -> None:
    """Close the client and, when this run started it, the local cluster, without the nanny's
    "Worker process still alive after 4.0 seconds, killing": every result is in by then, and
    it only means a worker was slow to unload torch on a busy machine."""
    client.close()
    if cluster is None:
        return
    nanny = logging.getLogger("distributed.nanny")

    def slow_exit(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Worker process still alive")

    nanny.addFilter(slow_exit)
    try:
        cluster.close()
    finally:
        nanny.removeFilter(slow_exit)


def job_from_settings(model_ref: str, out: Path, settings: Any, **kwargs: Any) -> CohortJob:
    """A :class:`CohortJob` from ``slides.SlideSettings`` (stored as a plain dict)."""
    from napari_pathreview.home import HOME_ENV

    return CohortJob(model_ref, str(out), asdict(settings), home=os.environ.get(HOME_ENV), **kwargs)
