"""Times TIAToolbox's PatchPredictor on given tiles; run by ``slide_inference.py`` in TIA's venv.

TIAToolbox pins older torch/numpy and pulls in ``opencv-python`` (which clashes with napari's
Qt), so it lives in its own virtual environment and this script runs there as a subprocess.
It imports only numpy, torch, safetensors and tiatoolbox (nothing from napari_pathreview).

Input: ``tiles.npy`` (N×H×W×3 uint8, the exact tiles our engine classifies) and
``weights.safetensors`` (our resnet's weights renamed to TIAToolbox's ``CNNModel`` layout),
plus a JSON config. Output: a JSON file with, per mode, the best wall time over the repeats:
``patch`` (the same tiles, pre-extracted; with the probabilities, to check both tools computed
the same thing) and ``wsi`` (TIAToolbox reading the slide itself at the model's µm/px, on its
own grid and tissue mask).

    /tmp/tia-venv/bin/python benchmarks/_tiatoolbox_runner.py CONFIG.json OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def _model(config: dict):
    from safetensors.torch import load_file
    from tiatoolbox.models.architecture.vanilla import CNNModel

    model = CNNModel(config["backbone"], num_classes=int(config["num_classes"]))
    model.load_state_dict(load_file(config["weights"]), strict=True)
    mean = np.asarray(config["mean"], np.float32)
    std = np.asarray(config["std"], np.float32)

    def normalise(image: np.ndarray) -> np.ndarray:  # HWC uint8 → HWC float, as ours does
        return ((image.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)

    model.preproc_func = normalise
    return model.eval()


def _probabilities(output) -> np.ndarray:
    if isinstance(output, dict):
        for key in ("probabilities", "predictions"):
            if key in output:
                return np.asarray(output[key], np.float32)
    return np.asarray(output, np.float32)


def _patch_mode(engine, config: dict) -> dict:
    """Best time over the repeats on the pre-extracted tiles, and their probabilities."""
    import torch

    tiles = np.load(config["tiles"])

    def run(images: np.ndarray):
        output = engine.run(
            images=images,
            patch_mode=True,
            patch_input_shape=tuple(int(v) for v in images.shape[1:3]),
            input_resolutions=[{"units": "baseline", "resolution": 1.0}],
            return_probabilities=True,
            device=config["device"],
            output_type="dict",
        )
        if config["device"].startswith("cuda"):
            torch.cuda.synchronize()
        return output

    run(tiles[: int(config["batch"])])  # warm-up (cuDNN, lazy imports)
    times, output = [], None
    for _ in range(int(config["repeats"])):
        start = time.perf_counter()
        output = run(tiles)
        times.append(time.perf_counter() - start)
    probs = _probabilities(output)
    return {"seconds": min(times), "n_tiles": int(len(tiles)), "probabilities": probs.tolist()}


def _wsi_mode(engine, config: dict, folder: Path) -> dict:
    """Best time over the repeats reading the slide itself at the model's µm/px.

    TIAToolbox reads patches of the model's size at ``mpp`` (its own level choice and
    resize), on its own grid with stride = patch (no overlap, as ours), and skips background
    with its own tissue mask (``auto_get_mask``).
    """
    import shutil

    import zarr

    side = int(config["side"])
    times, count = [], 0
    for index in range(int(config["repeats"])):
        out_dir = folder / f"tia_wsi_{index}"
        shutil.rmtree(out_dir, ignore_errors=True)
        start = time.perf_counter()
        output = engine.run(
            images=[Path(config["slide"])],
            patch_mode=False,
            save_dir=out_dir,
            input_resolutions=[{"units": "mpp", "resolution": float(config["mpp"])}],
            patch_input_shape=(side, side),
            stride_shape=(side, side),
            auto_get_mask=True,
            return_probabilities=True,
            device=config["device"],
            output_type="zarr",
        )
        times.append(time.perf_counter() - start)
        store = next(iter(output.values())) if isinstance(output, dict) else output
        count = int(zarr.open(str(store), mode="r")["probabilities"].shape[0])
    return {"seconds": min(times), "n_tiles": count}


def main(config_path: str, out_path: str) -> int:
    import tiatoolbox
    import torch
    from tiatoolbox.models.engine.patch_predictor import PatchPredictor

    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    engine = PatchPredictor(
        model=_model(config),
        batch_size=int(config["batch"]),
        num_workers=int(config.get("workers", 0)),
        device=config["device"],
        verbose=False,
    )
    result = {"tiatoolbox": tiatoolbox.__version__, "torch": torch.__version__}
    result["patch"] = _patch_mode(engine, config)
    if config.get("slide"):
        result["wsi"] = _wsi_mode(engine, config, Path(out_path).parent)
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
