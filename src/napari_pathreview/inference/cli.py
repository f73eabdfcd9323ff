"""``pathreview predict`` (one row per image, a film read alone and, with ``--two-film``, against
the woman's other film); ``explain``/``evaluate-cam`` and the slide commands attach from here.

Only argparse at import time; torch, the models and pytorch-grad-cam load inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.inference.cli_options import (
    build_predictor,
    cam_method,
    cam_options,
    check_cam_options,
    checked_stain,
    describe_error,
    explain_kwargs,
    model_options,
    preflight_card,
    stain_arg,
    tta_option,
    warn_tta_mismatch,
    write_csv,
)
from napari_pathreview.inference.large_images import TILE_ABOVE_PIXELS

logger = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Attach ``predict``, ``explain`` and ``evaluate-cam`` to the ``pathreview`` parser."""
    predict = subparsers.add_parser(
        "predict",
        help="classify images → predictions.csv (+ CAMs)",
        description="Classify images. A large one (a pyramid, or histology over "
        f"{TILE_ABOVE_PIXELS} px) is classified tile by tile as the Analyze dock does it "
        "(--mode, --mpp, --min-tissue); the rest whole.",
    )
    predict.add_argument("images", nargs="+", type=Path, help="image files")
    model_options(predict)
    tta_option(predict)
    predict.add_argument(
        "--cam",
        default=None,
        metavar="METHOD",
        help="also write a CAM (.npy) and overlay (.png) per image; a lesion-aware (patch MIL) "
        "model also offers patch_map and attention_map",
    )
    predict.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    predict.add_argument("--no-qc", action="store_true", help="skip quality control")
    predict.add_argument(
        "--frame",
        type=int,
        default=None,
        metavar="K",
        help="multi-frame images (tomosynthesis, stacks of film or colour frames): classify "
        "frame K, counted from 0 as napari's frame slider shows it (a K the stack lacks is "
        "refused before the model loads); without it a stack is refused, "
        "never read by its first frame. Single-frame images are read as they are",
    )
    predict.add_argument(
        "--two-film",
        action="store_true",
        help="mammograms: also decide each film against the same woman's other film (models "
        "trained with lesion.bilateral); women come from --patients, else MIAS numbers or the "
        "DICOM PatientID; a woman without exactly two films here is read alone",
    )
    predict.add_argument(
        "--patients", type=Path, default=None, metavar="CSV", help="path,patient_id per image"
    )
    cam_options(predict)
    from napari_pathreview.inference import explain_cli, slide_cli

    # large images (a pyramid, or histology over 1600 px) are tiled as the Analyze dock tiles
    slide_cli.add_scale_options(predict, what="histology image")
    predict.set_defaults(handler=_predict)

    explain_cli.add_commands(subparsers)  # explain, evaluate-cam
    slide_cli.add_commands(subparsers)  # predict-slides, cache


def _prediction_row(p: Any, classes: tuple[str, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": p.path, "model": p.model}
    row.update({f"p_{c}": f"{p.probabilities[c]:.6f}" for c in classes})
    row.update(
        {
            "predicted_label": p.label,
            "threshold": "" if p.threshold is None else p.threshold,
            "qc_passed": "" if p.qc is None else p.qc.passed,
            "qc_reasons": "" if p.qc is None else ";".join(p.qc.reasons),
            "stain": p.stain,
            "tta": p.tta,
            "seconds": f"{p.seconds:.4f}",
        }
    )
    return row


def _write_cam(out: Path, stem: str, image: Any, result: Any) -> None:
    import cv2
    import numpy as np
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from napari_pathreview.inference.preprocess import decode

    np.save(out / f"{stem}_{result.method}.npy", result.cam)
    rgb = decode(image).rgb  # the file, or the frame ``--frame`` chose
    if rgb.shape[:2] != result.cam.shape:
        rgb = cv2.resize(
            rgb, (result.cam.shape[1], result.cam.shape[0]), interpolation=cv2.INTER_AREA
        )
    overlay = show_cam_on_image(rgb.astype(np.float32) / 255.0, result.cam, use_rgb=True)
    cv2.imwrite(str(out / f"{stem}_{result.method}.png"), overlay[:, :, ::-1])


def _stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def _predict(args: argparse.Namespace) -> int:
    """Predict every image; a bad one gets ``status=error`` in its row and the rest go on.

    A large image is classified tile by tile, by the Analyze dock's rule and steps
    (``inference.large_images``), so both give the same probabilities for the same file.
    """
    from napari_pathreview import preflight
    from napari_pathreview.inference.slide_cli import scale_settings

    stain = stain_arg(args)  # a --stain-target file is read and checked before --out exists
    settings = scale_settings(args)  # a bad --mpp: refused under its flag, nothing made
    images = list(args.images)
    problems = {i: preflight.file_problem(p) for i, p in enumerate(images)}
    probes = _probes(images, problems, args.frame)  # each header read once; a bad --frame
    readable = [p for i, p in enumerate(images) if problems[i] is None]
    if not readable:
        raise ImageReadError("; ".join(str(m) for m in problems.values()))
    card = preflight_card(args, readable, probes)
    checked_stain(card, stain)  # a method without a fitted target: refused before the weights
    patients = _two_film_patients(args, card, images)
    preflight.output_folder(args.out, create=False)  # made once the model and --cam pass
    predictor = build_predictor(args, tta=args.tta, qc=not args.no_qc, stain=stain)
    warn_tta_mismatch("predict", predictor.card, predictor.tta)
    method = cam_method(args.cam, predictor) if args.cam else None
    no_cam = _cam_refusal(args, method, predictor)
    out = preflight.output_folder(args.out)
    classes = predictor.classes
    rows, one_film = [], []
    for path, stem, item in _iter_predictions(predictor, images, problems, settings, args.frame):
        p = item.prediction if isinstance(item, TiledImage) else item
        one_film.append(None if isinstance(p, str) else p.probabilities)
        if isinstance(p, str):
            rows.append({"path": str(path), "model": predictor.model_ref, **_failed(p)})
            print(f"{path}\terror\t{p}")
            continue
        frames = probes[path].frames if path in probes else None
        row = {**_prediction_row(p, classes), **_frame_cell(frames, args.frame), **_cached(item)}
        row.update(status="ok", error="")
        print(
            f"{path}\t{p.label}\t" + "\t".join(f"p_{c}={p.probabilities[c]:.3f}" for c in classes)
        )
        if no_cam:
            row.update(_failed(f"CAM: {no_cam}"))
        elif method:
            try:
                image = _image(path, args)  # read once for the CAM and its overlay
                _write_cam(out, stem, image, _explain_one(predictor, image, item, method, args))
            except Exception as error:  # noqa: BLE001 - one image must not stop the batch
                row.update(_failed(f"CAM: {describe_error(error)}"))
        rows.append(row)
    header = _predict_header(classes, frame=args.frame is not None)
    if patients is not None:
        header += _add_two_film(rows, one_film, predictor.card, patients)
    csv_path = write_csv(out / "predictions.csv", rows, header)
    print(f"wrote {csv_path}")
    return _report_failures(rows)


def _cam_refusal(args: argparse.Namespace, method: str | None, predictor: Any) -> str:
    """Check the CAM options once, before any image; returns why no CAM can be made ("" when
    they can). A CAM layer too coarse to localise (1×1) skips the CAMs, said once on stderr,
    and the probabilities are still written; any other bad option refuses the command."""
    from napari_pathreview.explain.cam_grid import CamResolutionError

    if not method:
        return ""
    try:
        check_cam_options(args, method, predictor)
    except CamResolutionError as error:
        print(
            f"pathreview predict: no CAMs ({method}): {error}; "
            "the probabilities are written, the CAMs skipped",
            file=sys.stderr,
        )
        return str(error)
    return ""


def _report_failures(rows: list[dict[str, Any]]) -> int:
    """Exit status 1 when any row is not ``ok`` (partial results), said on stderr."""
    failed = [r for r in rows if r["status"] != "ok"]
    if not failed:
        return 0
    logger.error("%d of %d image(s) failed; see the status/error columns", len(failed), len(rows))
    no_cam = sum(str(r["error"]).startswith("CAM: ") for r in failed)
    lost = len(failed) - no_cam
    if lost:
        print(f"pathreview predict: {lost} of {len(rows)} image(s) failed", file=sys.stderr)
    if no_cam:
        print(
            f"pathreview predict: {no_cam} of {len(rows)} image(s) have probabilities but no "
            "CAM; see the error column",
            file=sys.stderr,
        )
    return 1


def _two_film_patients(args: argparse.Namespace, card: Any, images: list[Path]) -> Any:
    """Each image's woman and ``FilmSide`` for ``--two-film`` (None without it), checked before
    any prediction."""
    from napari_pathreview.inference import two_film

    if not args.two_film:
        if args.patients is not None:
            raise InvalidInputError("--patients says whose films are paired: add --two-film")
        return None
    from napari_pathreview.io.patients import film_side

    two_film.check_two_film_model(card)
    listed = two_film.read_patients_csv(args.patients) if args.patients else None
    patients = two_film.patients_of(images, listed, args.patients)
    return patients, [film_side(image) for image in images]


def _add_two_film(rows: list[dict[str, Any]], one_film: list, card: Any, films: tuple) -> list:
    """Fill and print each film's two-film decision; returns the columns it adds.

    ``one_film``: each row's one-film probabilities (None where the prediction failed).
    ``films``: each row's patient and ``FilmSide``.
    """
    from napari_pathreview.inference.two_film import decide_films, why_alone

    patients, sides = films
    paths = [row["path"] for row in rows]
    decisions = decide_films(card, one_film, patients, paths, sides, paths)
    columns = ["two_film_other", *[f"two_film_p_{c}" for c in card.classes], "two_film_label"]
    for row, decision in zip(rows, decisions, strict=True):
        if decision is None:  # no other film of hers here: the film stands alone
            row.update(dict.fromkeys(columns, ""))
            continue
        row.update({f"two_film_p_{c}": f"{v:.6f}" for c, v in decision.probabilities.items()})
        row.update(two_film_other=decision.other, two_film_label=decision.label)
        print(f"{row['path']}\ttwo-film\t{decision.label}\tvs {decision.other}")
    for i, why in sorted(why_alone(one_film, patients, sides, paths).items()):
        print(f"{rows[i]['path']}\ttwo-film\tread alone: {why}")
    return columns


def _predict_header(classes: tuple[str, ...], frame: bool = False) -> list[str]:
    return [
        "path",
        *(["frame"] if frame else []),
        "model",
        *[f"p_{c}" for c in classes],
        "predicted_label",
        "threshold",
        "qc_passed",
        "qc_reasons",
        "stain",
        "tta",
        "seconds",
        "cached",
        "cached_run_seconds",
        "status",
        "error",
    ]


def _cached(item: Any) -> dict[str, Any]:
    """The ``cached`` and ``cached_run_seconds`` cells: a large image's result read from the
    slide cache says so, its ``seconds`` being this run's lookup and the stored run's kept
    apart; a result computed now is not cached."""
    if isinstance(item, TiledImage) and item.cached_run_seconds is not None:
        return {"cached": True, "cached_run_seconds": f"{item.cached_run_seconds:.4f}"}
    return {"cached": False, "cached_run_seconds": ""}


def _failed(message: str) -> dict[str, str]:
    return {"status": "error", "error": message}


@dataclass(frozen=True)
class TiledImage:
    """A large image classified tile by tile: its prediction and what its CAM is read from."""

    prediction: Any
    result: Any  # slides.SlideResult
    source: Any  # the SlideSource the tiles were read from
    settings: Any  # slide_grid.SlideSettings
    cache: Any = None  # the cache.SlideCache the result came from / went to; its CAM too
    cached_run_seconds: float | None = None  # served from the cache: the stored run's seconds


def _explain_one(predictor: Any, image: Any, item: Any, method: str, args: Any) -> Any:
    """An image's CAM with the CAM options: a tiled image's on the heatmap's plan (as the
    Analyze dock's, each tile under ``--cam-tta`` and the Score-CAM options), else the whole
    ``image``'s (``_image``: the file, or what ``--mpp`` / ``--frame`` chose)."""
    options = explain_kwargs(args, method)
    if not isinstance(item, TiledImage):
        return predictor.explain(image, method, **options)
    from napari_pathreview.inference.large_images import iter_explain_tiles, run_to_end

    label = options.pop("target_class") or item.prediction.label
    steps = iter_explain_tiles(
        predictor, item.source, item.result, item.settings, method, label, None, item.cache, options
    )
    return run_to_end(steps)


def _image(path: Path, args: Any) -> Any:
    """What a whole image's CAM reads: the file, or the image ``--mpp`` / ``--frame`` chose."""
    if args.slide_um_per_px is None and args.frame is None:
        return path
    return _load(path, args.slide_um_per_px, args.frame)


def _load(path: Path, um_per_px: float | None, frame: int | None = None) -> Any:
    """The image as read for the model: with ``--mpp``'s pixel size and ``--frame``'s frame
    (a stack without ``--frame`` is refused, naming its frames: ``io.frames``)."""
    from napari_pathreview.io import load_image

    return load_image(path, um_per_px=um_per_px, frame=frame)


def _probes(
    images: list[Path], problems: dict[int, str | None], frame: int | None
) -> dict[Path, Any]:
    """Each readable image's modality and frame count (``preflight.probe_image``), from one
    read of its header before any model work; with ``--frame``, a stack that has no frame K
    gets it as its problem (its row's error, or the command's when no image is left), naming
    the file and its frames."""
    from napari_pathreview.io.frames import frame_problem
    from napari_pathreview.preflight import probe_image

    probes = {}
    for i, path in enumerate(images):
        if problems[i] is None:
            probes[path] = probe_image(path)
            if frame is not None:
                problems[i] = frame_problem(path, probes[path].frames, frame)
    return probes


def _frame_cell(frames: int | None, frame: int | None) -> dict[str, Any]:
    """The ``frame`` column with ``--frame``: K for a stack, empty for a single image."""
    if frame is None:
        return {}
    return {"frame": frame if (frames or 1) > 1 else ""}


def _classify(predictor: Any, path: Path, settings: Any, frame: int | None = None) -> Any:
    """A large image's ``TiledImage`` (the dock's rule and steps), else the ``LoadedImage``
    to classify whole (with ``--mpp``'s pixel size when given).

    A large image's heatmap (and its CAM) is kept in the Analyze dock's slide cache, keyed by
    the file (its size and modification time), the model and the settings, so predicting the
    unchanged file again reads it from there. A frame chosen from a stack is not cached (the
    file's key does not say which frame).

    Raises:
        ImageReadError: the file cannot be read; SlideScaleError: matched tiling without a
            pixel size (the message says what to pass).
    """
    from napari_pathreview.inference.cache import SlideCache
    from napari_pathreview.inference.large_images import (
        iter_classify_tiles,
        needs_tiling,
        run_to_end,
    )
    from napari_pathreview.inference.layer_slide import as_slide

    loaded = _load(path, settings.slide_um_per_px, frame)
    if not needs_tiling(loaded.levels, loaded.modality):
        return loaded
    start = time.perf_counter()
    source = as_slide(loaded)
    cache = SlideCache() if "frame" not in loaded.metadata else None
    steps = iter_classify_tiles(predictor, source, settings, None, cache, str(path))
    prediction, result = run_to_end(steps)
    if not result.cached:
        return TiledImage(prediction, result, source, settings, cache)
    # served: this run's seconds are the lookup's (fingerprint, cache read), not the stored run's
    looked_up = replace(prediction, seconds=time.perf_counter() - start)
    return TiledImage(looked_up, result, source, settings, cache, prediction.seconds)


def _iter_predictions(
    predictor: Any,
    images: list[Path],
    problems: dict[int, str | None],
    settings: Any,
    frame: int | None = None,
) -> Iterator[tuple[Path, str, Any]]:
    """(path, stem, a Prediction, ``TiledImage`` or error text) in input order, batch by batch.

    A batch that fails is retried image by image, so one unreadable file costs only itself.
    Results are handed on as each batch finishes, so a large image's tiles are let go of
    before the next batch.
    """
    stems = _stems(images)
    good = [i for i in range(len(images)) if problems[i] is None]
    results: dict[int, Any] = {i: problems[i] for i in range(len(images)) if problems[i]}
    size = predictor.images_per_forward
    handed = 0
    for start in range(0, len(good), size):
        whole: dict[int, Any] = {}  # index → LoadedImage
        for i in good[start : start + size]:
            try:
                item = _classify(predictor, images[i], settings, frame)
            except Exception as error:  # noqa: BLE001 - recorded in the row, batch goes on
                logger.debug("prediction of %s failed", images[i], exc_info=True)
                item = describe_error(error)
            if isinstance(item, str | TiledImage):
                results[i] = item
            else:
                whole[i] = item
        _predict_whole(predictor, whole, results)
        while handed < len(images) and handed in results:
            yield images[handed], stems[handed], results.pop(handed)
            handed += 1
    for i in range(handed, len(images)):
        yield images[i], stems[i], results.pop(i)


def _predict_whole(predictor: Any, chunk: dict[int, Any], results: dict[int, Any]) -> None:
    """Predict ``chunk`` (index → loaded image) as one batch, into ``results``."""
    if not chunk:
        return
    try:
        for i, p in zip(chunk, predictor.predict(list(chunk.values())), strict=True):
            results[i] = p
    except Exception:  # noqa: BLE001 - retried one by one below to find the bad image
        for i, image in chunk.items():
            try:
                results[i] = predictor.predict([image])[0]
            except Exception as error:  # noqa: BLE001 - recorded in the row, batch goes on
                logger.debug("prediction of %s failed", image.path, exc_info=True)
                results[i] = describe_error(error)
