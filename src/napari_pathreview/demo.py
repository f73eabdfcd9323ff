"""``pathreview demo``: train (once) and show the demo models on the sample images.

If the registry holds no demo model for a modality, the project's own training code
trains one from ``sample_data/demo`` (``training/demo*.yaml``) and registers it, with a
card saying it is a demo model. Then either napari opens with the samples, both widgets
docked and a prediction and CAM already shown, or (``--headless --out DIR``) the same
analysis is written to DIR: ``predictions.csv``, CAM overlay PNGs and ``iou.json``/``iou.csv``,
plus the sample slide analysed at the histology model's own µm/px (``slide_heatmap.png``,
``slide_tiles.csv``, ``slide_cam.png``, ``slide.json``; see ``_demo_slide``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_pathreview._demo_samples import (  # noqa: F401  (public through this module too)
    SAMPLE_KEYS,
    DemoError,
    DemoSample,
    demo_samples,
    sample_data_dir,
)
from napari_pathreview.inference.device import DEVICES
from napari_pathreview.modality import MODALITIES

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------- models
def recipes_dir() -> Path:
    """The top-level ``training/`` recipes, through the package's ``training/recipes`` link."""
    return Path(__file__).resolve().parent / "training" / "recipes"


def demo_recipes() -> list[Path]:
    """``training/demo*.yaml``: the small recipes the demo trains."""
    recipes = sorted(recipes_dir().glob("demo*.yaml"))
    if not recipes:
        raise DemoError(f"no demo recipe (demo*.yaml) in {recipes_dir()}; reinstall the package.")
    return recipes


def is_demo_card(card: Any) -> bool:
    """Demo models say so in their name or description."""
    return "demo" in card.name.lower() or "demo model" in (card.description or "").lower()


def find_demo_models() -> dict[str, str]:
    """``{modality: "name@version"}`` of the newest registered demo model per modality."""
    from napari_pathreview.widgets._models import registered_cards

    found: dict[str, tuple[int, str]] = {}
    for card in registered_cards():
        if not is_demo_card(card):
            continue
        version = int(card.version) if str(card.version).isdigit() else 0
        if card.modality not in found or version > found[card.modality][0]:
            found[card.modality] = (version, f"{card.name}@{card.version}")
    return {modality: ref for modality, (_, ref) in found.items()}


def _recipe_modality(recipe: Path) -> str | None:
    import yaml

    raw = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    text = json.dumps(raw).lower()
    for modality in MODALITIES:
        if f'"modality": "{modality}"' in text:
            return modality
    return "mammogram" if "mammo" in recipe.stem.lower() else "histology"


def ensure_demo_models(retrain: bool = False, overrides: Sequence[str] = ()) -> dict[str, str]:
    """Train and register the demo models that are missing (all of them with ``retrain``)."""
    found = {} if retrain else find_demo_models()
    missing = [m for m in MODALITIES if m not in found]
    if not missing:
        logger.info("demo models already registered: %s", ", ".join(found.values()))
        return found
    from napari_pathreview.training import run_recipe

    for recipe in demo_recipes():
        if _recipe_modality(recipe) not in missing:
            continue
        logger.info("training demo model from %s (once; a few minutes on a CPU)", recipe.name)
        result = run_recipe(recipe, overrides=list(overrides))
        logger.info("registered %s (metrics in %s)", result.registered, result.run_dir)
    found = find_demo_models()
    absent = [m for m in MODALITIES if m not in found]
    if absent:
        raise DemoError(f"training registered no demo model for {', '.join(absent)}; see the log.")
    return found


# ------------------------------------------------------------------------ samples
def analyse_sample(
    sample: DemoSample, model_ref: str, device: str = "auto", cam_method: str = "gradcam"
) -> Any:
    """Run the Analyze widget's own pipeline on one sample; returns its AnalysisResult."""
    from napari_pathreview.inference.analysis import AnalysisRequest, AnalysisResult, analyse
    from napari_pathreview.io import load_image

    image = load_image(sample.path)
    request = AnalysisRequest(model_ref=model_ref, device=device, cam_method=cam_method)
    levels = image.levels if len(image.levels) > 1 else image.data
    for item in analyse(request, levels, modality=image.modality):
        if isinstance(item, AnalysisResult):
            return item
    raise DemoError(f"analysis of {sample.path.name} produced no result")


# ----------------------------------------------------------------------- headless
def overlay_png(image: Any, cam: Any, path: Path, alpha: float = 0.5) -> Path:
    """Write the image with its CAM blended on top (inferno colormap)."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image
    from skimage.transform import resize

    from napari_pathreview.io import to_rgb_uint8

    rgb = to_rgb_uint8(np.asarray(image)).astype(np.float32)
    heat = np.asarray(cam, dtype=np.float32)
    if heat.shape != rgb.shape[:2]:
        heat = resize(heat, rgb.shape[:2], order=1, preserve_range=True)
    colour = colormaps["inferno"](np.clip(heat, 0, 1))[..., :3] * 255.0
    weight = alpha * np.clip(heat, 0, 1)[..., None]
    blended = (1 - weight) * rgb + weight * colour
    Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8)).save(path)
    return path


def write_headless(
    out: Path, models: dict[str, str], device: str = "auto", threshold: float = 0.5
) -> dict[str, Path]:
    """Analyse every sample and write predictions, CAM overlays and ROI scores to ``out``.

    The scores carry ``cam_empty`` (``explain.evaluate.scored_map``), as explain's do: a
    constant CAM scores 0 without having missed the ROI.
    """
    from napari_pathreview.explain.evaluate import scored_map
    from napari_pathreview.io import load_image

    out.mkdir(parents=True, exist_ok=True)
    rows, scores = [], []
    for sample in demo_samples():
        result = analyse_sample(sample, models[sample.modality], device=device)
        png = None
        if result.cam is not None:
            png = overlay_png(
                load_image(sample.path).data, result.cam.cam, out / f"{sample.name}_cam.png"
            )
        rows.append(_prediction_row(sample, result, png))
        if sample.roi is not None and result.cam is not None:
            values = scored_map(result.cam.cam, sample.roi, threshold)
            scores.append(
                {
                    "image": sample.path.name,
                    "model": rows[-1]["model"],
                    "method": result.cam.method,
                    "threshold": threshold,
                    **values,
                }
            )
    paths = {
        "predictions": _write_csv(out / "predictions.csv", rows),
        "iou_csv": _write_csv(out / "iou.csv", scores),
    }
    paths["iou_json"] = out / "iou.json"
    paths["iou_json"].write_text(json.dumps(scores, indent=2), encoding="utf-8")
    paths.update(_slide_outputs(out, models["histology"], device))
    return paths


def _slide_outputs(out: Path, model_ref: str, device: str) -> dict[str, Path]:
    """The sample pyramid at its stated µm/px, analysed at the model's own resolution."""
    from napari_pathreview._demo_slide import (
        analyse_slide,
        demo_slide_path,
        overview,
        write_slide_outputs,
    )
    from napari_pathreview.io import load_image

    slide = demo_slide_path()
    result = analyse_slide(slide, model_ref, device=device)
    paths = write_slide_outputs(out, slide, result)
    if result.cam is not None:
        image = overview(list(load_image(slide).levels))
        cam = result.cam.cam / max(float(result.cam.cam.max()), 1e-6)  # tiles weight by P(class)
        paths["slide_cam"] = overlay_png(image, cam, out / "slide_cam.png")
    return paths


def _prediction_row(sample: DemoSample, result: Any, png: Path | None) -> dict[str, Any]:
    qc = result.prediction.qc
    row: dict[str, Any] = {
        "path": str(sample.path),
        "modality": sample.modality,
        "model": f"{result.model_name}@{result.model_version}",
    }
    row.update({f"p_{name}": f"{value:.6f}" for name, value in result.probabilities.items()})
    row.update(
        {
            "label": result.prediction.label,
            "threshold": result.prediction.threshold,
            "qc_passed": None if qc is None else bool(qc.passed),
            "qc_reasons": "" if qc is None else "; ".join(qc.reasons),
            "cam_method": result.cam.method if result.cam is not None else "",
            "cam_png": png.name if png else "",
            "seconds": f"{result.seconds:.3f}",
        }
    )
    return row


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows with differing keys (class columns differ per model) as one CSV, p_* grouped."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    probs = [c for c in columns if c.startswith("p_")]
    first = columns.index(probs[0]) if probs else len(columns)
    rest = [c for c in columns if not c.startswith("p_")]
    columns = rest[:first] + probs + rest[first:]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or ["image"])
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------- CLI
def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Attach ``pathreview demo`` to the CLI."""
    parser = subparsers.add_parser(
        "demo",
        help="train the demo models if needed, then show them in napari",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "--headless",
        action="store_true",
        help="no window: write predictions, CAM overlays and IoU to --out",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("pathreview-demo"),
        help="output folder for --headless (default: ./pathreview-demo)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train new demo model versions even if some are registered",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per training phase (shortens the demo training)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a demo recipe key (repeatable)",
    )
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=None,
        help="open the workspace, save a screenshot to this PNG and exit",
    )
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Handler of ``pathreview demo``."""
    overrides = list(args.overrides)
    if args.epochs is not None:
        if args.epochs < 1:
            raise DemoError("--epochs must be at least 1")
        overrides.append(f"phases.*.epochs={args.epochs}")
    if args.headless:  # a bad --out fails now, not after the demo models have trained
        from napari_pathreview.preflight import output_folder

        output_folder(args.out, "--out", create=False)
    models = ensure_demo_models(retrain=args.retrain, overrides=overrides)
    if args.headless:
        from napari_pathreview.inference.explain_cli import warn_empty_cams

        paths = write_headless(Path(args.out), models, device=args.device)
        for kind, path in paths.items():
            sys.stdout.write(f"{kind}: {path}\n")
        warn_empty_cams("demo", json.loads(paths["iou_json"].read_text(encoding="utf-8")))
        return 0
    from napari_pathreview.widgets._workspace import open_workspace

    return open_workspace(models, device=args.device, screenshot=args.screenshot)
