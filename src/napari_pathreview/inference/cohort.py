"""Cohort runs: one task per slide on Dask distributed, a local cluster or a running one.

Each task opens its slide, runs the slide engine (``slides.iter_slide``) with a predictor the
worker keeps between tasks, and writes ``slides/<stem>/`` (result.zarr + tiles.geojson) under
the output folder. The driver collects one row of slide-level aggregates per slide into
``slides.csv`` and one row per failed slide into ``failures.csv`` (after a row for each thing
a given folder holds that looks like a slide but is not used, see ``io.slide_folders``),
rewritten after every slide so an interrupted run keeps what it finished; a failing slide
never stops the others, and slides already in ``slides.csv`` whose folder holds that run's
result, from the same files, are skipped (``cohort_records``: what an earlier run left and
what this one makes of it; a slide whose files changed runs again). A slide's folder is named
once (its stem, ``-2``… when another file of that name has one) and kept by later runs.
``workers=0`` runs the same tasks in this process (no Dask), which the tests compare against.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_pathreview.errors import InvalidInputError, PathReviewError
from napari_pathreview.inference.cache import remove_stale_partials
from napari_pathreview.inference.cohort_records import Tables, plan_run, read_rows
from napari_pathreview.io.slide_files import slide_state

if TYPE_CHECKING:
    from napari_pathreview.io.slide_folders import SlideList

__all__ = [
    "CohortJob",
    "CohortSummary",
    "SchedulerUnreachableError",
    "WorkersFailedToStartError",
    "default_workers",
    "job_from_settings",
    "run_cohort",
    "slide_task",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
"""Seconds to wait for a scheduler address to answer before giving up."""


class SchedulerUnreachableError(PathReviewError):
    """No Dask scheduler answered at the given address."""


class WorkersFailedToStartError(PathReviewError):
    """The local cluster's workers did not start (most often: a script calling
    :func:`run_cohort` outside ``if __name__ == "__main__":``)."""


UNGUARDED = (
    'a script that calls run_cohort must call it under `if __name__ == "__main__":` '
    "(Dask starts each local worker by importing the script again; README: Whole slides)"
)


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
        qc: Quality-check every tissue tile (``slide_qc``; histology models) and give each
            row its QC columns; part of :meth:`slide_key`, as ``settings.qc_max_flagged`` is.
    """

    model_ref: str
    out: str
    settings: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    stain: str | dict[str, Any] | None = None
    tta: str | None = None
    home: str | None = None
    qc: bool = True

    def slide_key(self, path: Path) -> str:
        """Identifies (slide and the state of its files, model, settings, stain target) so
        re-runs skip finished slides, and only those run with the same settings on the same
        files: a slide re-scanned or re-exported in place (any of its files rewritten, even
        at the same size: ``io.slide_files.slide_state``) runs again."""
        return self.key_for(path, slide_state(path))

    def key_for(self, path: Path, state: str) -> str:
        """:meth:`slide_key` of ``path`` with its files in ``state``."""
        parts = [str(path.resolve()), state, self.model_ref, self.settings, self.stain, self.tta]
        return _digest([*parts, {"qc": self.qc}], 16)

    def legacy_key(self, path: Path) -> str:
        """The key of versions before the slide's state was part of it (path and the named
        file's size): recognised on resume only (``cohort_records``), never written."""
        size = path.stat().st_size if path.exists() else None
        parts = [str(path.resolve()), size, self.model_ref, self.settings, self.stain, self.tta]
        return _digest(parts, 16)


def _digest(value: Any, length: int) -> str:
    """The first ``length`` hex digits of the sha256 of ``value``'s canonical JSON."""
    text = json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class CohortSummary:
    """What a cohort run did: rows written, slides skipped as finished, failures, and the
    slides run again because their files changed since their earlier result (``changed``,
    also in ``rows`` or ``failures``)."""

    rows: list[dict[str, Any]]
    skipped: list[str]
    failures: list[dict[str, str]]
    slides_csv: Path
    failures_csv: Path
    changed: list[str] = field(default_factory=list)

    @property
    def model_loads(self) -> list[float]:
        """Seconds each worker took to load the model in this run (the rows' ``model_load_s``
        that are not 0; none when every worker already held it)."""
        return [float(r["model_load_s"]) for r in self.rows if float(r["model_load_s"]) > 0]

    @property
    def model_warmups(self) -> list[float]:
        """Seconds of each worker's warm-up forward in this run (the rows' ``model_warmup_s``
        that are not 0)."""
        return [float(r["model_warmup_s"]) for r in self.rows if float(r["model_warmup_s"]) > 0]


def default_workers() -> int:
    """One worker per GPU, else one per four CPU cores (each worker runs torch's own threads)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return max(1, (os.cpu_count() or 1) // 4)


@dataclass
class _Loaded:
    """A worker's predictor, and whether a slide's row has reported the time it took to load
    and warm up (only the first slide to use it waited for them)."""

    predictor: Any
    reported: bool = False


@functools.lru_cache(maxsize=2)
def _worker_predictor(
    model_ref: str, device: str, stain_json: str, tta: str | None, home: str | None, qc: bool
) -> _Loaded:
    """A predictor per worker process and model, loaded once and reused across its slides.

    ``stain_json``: the job's ``stain`` as JSON text, hashable for the cache even when it is a
    fitted target's state.
    """
    if home:
        os.environ["PATHREVIEW_HOME"] = home
    from napari_pathreview.inference.predictor import Predictor

    stain = json.loads(stain_json)
    return _Loaded(Predictor.from_registry(model_ref, device=device, stain=stain, tta=tta, qc=qc))


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
    as the Analyze dock decides, its ``qc`` the slide's ``slide_qc.SlideQC`` or None),
    ``stain``: the method applied, ``target``: the id of the fitted target applied
    (``stain.targets.target_id``: a --stain-target's or the card's)."""
    from napari_pathreview.inference.slide_qc import qc_columns

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
    row.update(qc_columns(decided.qc))
    row["seconds"] = round(float(result.seconds), 3)
    row["tiles_per_s"] = round(float(result.tiles_per_s), 2)
    return row


def slide_task(path: str, stem: str, job: CohortJob) -> dict[str, Any]:
    """Run one slide (on a worker or here): writes ``out/slides/<stem>`` and returns its row.

    The row's ``model_load_s`` is the time this task spent importing torch and loading the
    model when it was the first on its worker to need them, and ``model_warmup_s`` that of
    the model's first forward (``prefetch.warm_up``, run before the slide starts), both 0 for
    the worker's other slides; the slide's ``seconds`` and ``tiles_per_s`` include neither.
    """
    start = time.perf_counter()
    from napari_pathreview.inference.cache import write_result
    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.prefetch import warm_up
    from napari_pathreview.inference.slide_qc import qc_columns, slide_quality
    from napari_pathreview.inference.slides import SlideSettings, predict_slide, slide_prediction
    from napari_pathreview.stain.targets import target_id

    settings = SlideSettings(**job.settings)
    slide_um = settings.slide_um_per_px
    device = _worker_device(job.device)
    stain_json = json.dumps(job.stain, sort_keys=True)
    loaded = _worker_predictor(job.model_ref, device, stain_json, job.tta, job.home, job.qc)
    predictor, load_s, warmup_s = loaded.predictor, 0.0, 0.0
    if not loaded.reported:
        load_s = time.perf_counter() - start
        warmup_s = warm_up(predictor, settings)
        loaded.reported = True
    state = slide_state(Path(path))  # before reading: the files this result comes from
    key = job.key_for(Path(path), state)
    source = as_slide(Path(path), um_per_px=slide_um)
    try:
        result = predict_slide(predictor, source, settings)
    finally:
        source.close()
    qc = slide_quality(result, settings.qc_max_flagged) if predictor.qc else None
    decided = replace(slide_prediction(predictor, result), qc=qc)
    meta = {"key": key, "path": str(path), "file": str(Path(path).resolve()), "slide_state": state}
    meta["qc"] = qc_columns(qc)  # the slide's verdict beside its tiles' checks (tile_qc)
    planes = source.focal_planes.columns() if source.focal_planes else {}  # a z-stack's plane
    write_result(Path(job.out) / "slides" / stem, result, meta={**meta, **planes})
    applied = target_id(predictor.normalizer)
    row = _row(Path(path), stem, key, result, decided, predictor.stain_name, applied)
    row.update(planes)
    return {**row, "model_load_s": round(load_s, 3), "model_warmup_s": round(warmup_s, 3)}


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
        WorkersFailedToStartError: the local cluster did not start; also raised in a worker
            process that is importing its parent's script, which called this at its top level.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise WorkersFailedToStartError(f"run_cohort called while a worker starts: {UNGUARDED}")
    found = _expanded(slides)
    paths = found.slides
    refused = [{"path": str(r.path), "error": f"not used: {r.why}"} for r in found.refused]
    for row in refused:
        logger.warning("%s %s", row["path"], row["error"])
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    slides_csv, failures_csv = out / "slides.csv", out / "failures.csv"
    remove_stale_partials(out / "slides")
    plan = plan_run(paths, job, out, read_rows(slides_csv))
    if plan.skipped:
        logger.info("skipping %d finished slide(s)", len(plan.skipped))
    table = Tables(slides_csv, failures_csv, plan.kept, refused)
    rows, failures = _dispatch(plan.todo, job, scheduler, workers, progress, table.save)
    table.save(rows, failures)  # in the order given, whatever order they finished in
    return CohortSummary(
        rows, plan.skipped, refused + failures, slides_csv, failures_csv, plan.changed
    )


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

    with bar:  # closed on an error too, so its line does not follow the message
        if workers == 0 and scheduler is None:
            for path, stem in todo:
                try:
                    record(path, slide_task(str(path), stem, job), None)
                except Exception as error:  # one slide's failure must not stop the cohort
                    record(path, None, error)
        elif todo:
            _on_dask(todo, job, scheduler, workers, record)
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
    try:
        cluster = LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    except RuntimeError as error:  # distributed says only "Nanny failed to start."
        raise WorkersFailedToStartError(
            f"the local Dask workers did not start ({error}); {UNGUARDED}. Otherwise see the "
            "worker errors above, or run with workers=0 (--workers 0) in this process."
        ) from error
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
