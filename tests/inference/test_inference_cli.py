"""``pathreview predict | explain | evaluate-cam`` in-process, on a registered tiny model."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from napari_pathreview.cli import main
from napari_pathreview.io import Roi, write_geojson_rois
from napari_pathreview.models import create_model


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_the_specified_columns(binary_ref, rng, tissue_like, tmp_path) -> None:
    images = [_write_png(tmp_path / f"img{i}.png", tissue_like(rng, 70, 90)) for i in range(3)]
    out = tmp_path / "out"
    argv = [
        "predict",
        *map(str, images),
        "--model",
        binary_ref,
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    with (out / "predictions.csv").open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == [
        "path", "model", "p_benign", "p_malignant", "predicted_label", "threshold",
        "qc_passed", "qc_reasons", "stain", "tta", "seconds", "cached", "cached_run_seconds",
        "status", "error",
    ]  # fmt: skip
    rows = _rows(out / "predictions.csv")
    assert [r["path"] for r in rows] == [str(p) for p in images]
    for row in rows:
        assert row["model"] == "tiny@1" and row["threshold"] == "0.3"
        assert float(row["p_benign"]) + float(row["p_malignant"]) == pytest.approx(1.0, abs=1e-5)
        assert row["qc_passed"] in ("True", "False") and row["stain"] == "none"


def test_predict_with_cam_writes_npy_and_overlay(binary_ref, rng, tissue_like, tmp_path) -> None:
    image = _write_png(tmp_path / "slide.png", tissue_like(rng, 70, 90))
    out = tmp_path / "out"
    argv = ["predict", str(image), "--model", binary_ref, "--device", "cpu", "--tta", "flips",
            "--cam", "gradcam++", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    cam = np.load(out / "slide_gradcam++.npy")
    assert cam.shape == (70, 90) and cam.min() >= 0.0 and cam.max() <= 1.0
    overlay = cv2.imread(str(out / "slide_gradcam++.png"))
    assert overlay.shape == (70, 90, 3)
    assert _rows(out / "predictions.csv")[0]["tta"] == "flips"


def test_predict_missing_model_exits_with_clear_error(tmp_path, rng, tissue_like, capsys) -> None:
    image = _write_png(tmp_path / "a.png", tissue_like(rng, 32, 32))
    assert main(["predict", str(image), "--model", "absent@2", "--out", str(tmp_path)]) == 2
    assert "absent" in capsys.readouterr().err


def _explain_against_a_square_roi(model_ref: str, rgb: np.ndarray, tmp_path: Path) -> Path:
    """``pathreview explain a.png --method gradcam,eigencam --roi <a square>``; its CSV."""
    image = _write_png(tmp_path / "a.png", rgb)
    roi = write_geojson_rois(
        tmp_path / "roi.geojson", [Roi(np.array([[8, 8], [8, 40], [40, 40], [40, 8]]), "rectangle")]
    )
    out = tmp_path / "scores.csv"
    argv = ["explain", str(image), "--model", model_ref, "--device", "cpu",
            "--method", "gradcam,eigencam", "--roi", str(roi), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out


def test_explain_scores_each_method_against_a_geojson_roi(
    binary_ref, rng, tissue_like, tmp_path, capsys
) -> None:
    out = _explain_against_a_square_roi(binary_ref, tissue_like(rng, 64, 64), tmp_path)
    rows = _rows(out)
    assert [r["method"] for r in rows] == ["gradcam", "eigencam"]
    for row in rows:
        assert 0.0 <= float(row["iou"]) <= float(row["dice"]) <= 1.0
    assert "gradcam" in capsys.readouterr().out


def test_explain_scores_the_cam_against_the_roi_less_its_hole(
    binary_ref, rng, tissue_like, tmp_path
) -> None:
    """QuPath's 40×40 square (8, 8)–(48, 48) with the hole (18, 18)–(38, 38): the printed IoU
    and Dice are the CAM's against rows/columns 8–47 less 18–37 (they counted the hole)."""
    import json

    from napari_pathreview.explain.metrics import roi_dice, roi_iou
    from napari_pathreview.inference import Predictor

    image = _write_png(tmp_path / "a.png", tissue_like(rng, 64, 64))
    outer = [[8, 8], [48, 8], [48, 48], [8, 48], [8, 8]]
    hole = [[18, 18], [18, 38], [38, 38], [38, 18], [18, 18]]
    roi = tmp_path / "tumour.geojson"
    roi.write_text(json.dumps({"type": "Polygon", "coordinates": [outer, hole]}))
    out = tmp_path / "scores.csv"
    argv = ["explain", str(image), "--model", binary_ref, "--device", "cpu",
            "--roi", str(roi), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    (row,) = _rows(out)
    by_hand = np.zeros((64, 64), bool)
    by_hand[8:48, 8:48] = True
    by_hand[18:38, 18:38] = False
    cam = Predictor.from_registry(binary_ref, device="cpu").explain(image, "gradcam").cam
    assert float(row["iou"]) == pytest.approx(roi_iou(cam, by_hand, 0.5))
    assert float(row["dice"]) == pytest.approx(roi_dice(cam, by_hand, 0.5))


def _mias_folder(folder: Path, rng: np.random.Generator) -> Path:
    folder.mkdir()
    info = [
        "REFNUM BG CLASS SEVERITY X Y RADIUS",
        "mdb001 G CIRC B 512 512 100",
        "mdb002 F SPIC M 300 700 80",
        "mdb003 D NORM",
    ]
    (folder / "Info.txt").write_text("\n".join(info) + "\n")
    for ref in ("mdb001", "mdb002", "mdb003"):
        _write_png(folder / f"{ref}.png", rng.integers(0, 200, (128, 128), dtype=np.uint8))
    return folder


def test_explain_with_mias_info(binary_ref, rng, tmp_path, capsys) -> None:
    folder = _mias_folder(tmp_path / "mias", rng)
    argv = ["explain", str(folder / "mdb001.png"), "--model", binary_ref, "--device", "cpu",
            "--mias-info", str(folder / "Info.txt"), "--allow-modality-mismatch"]  # fmt: skip
    assert main(argv) == 0
    assert "IoU" in capsys.readouterr().out


def test_explain_normal_mias_image_has_no_roi(binary_ref, rng, tmp_path, capsys) -> None:
    folder = _mias_folder(tmp_path / "mias", rng)
    argv = ["explain", str(folder / "mdb003.png"), "--model", binary_ref, "--device", "cpu",
            "--mias-info", str(folder / "Info.txt"), "--allow-modality-mismatch"]  # fmt: skip
    assert main(argv) == 2
    assert "no ROI" in capsys.readouterr().err


def test_evaluate_cam_table_per_method(binary_ref, rng, tmp_path, capsys) -> None:
    folder = _mias_folder(tmp_path / "mias", rng)
    out, per_image = tmp_path / "table.csv", tmp_path / "per_image.csv"
    argv = ["evaluate-cam", "--mias", str(folder), "--model", binary_ref, "--device", "cpu",
            "--allow-modality-mismatch", "--methods", "gradcam,gradcam++,scorecam",
            "--scorecam-top-k", "8", "--out", str(out), "--per-image", str(per_image)]  # fmt: skip
    assert main(argv) == 0
    rows = _rows(out)
    assert [r["method"] for r in rows] == ["gradcam", "gradcam++", "scorecam"]
    scores = ("iou", "dice", "pointing", "energy")
    stats = [f"{s}_{k}" for s in scores for k in ("mean", "sd")]
    assert list(rows[0]) == ["method", "n", "n_cam_empty", *stats]
    assert all(r["n"] == "2" for r in rows)  # mdb003 is normal: no ROI, not scored
    assert len(_rows(per_image)) == 6
    printed = capsys.readouterr().out
    assert "±" in printed and "scorecam" in printed


@pytest.fixture
def blind_ref(registry, binary_card) -> str:
    """A resnet18 whose classifier weights are all zero: every gradient CAM comes out empty."""
    model = create_model("resnet18", 2).eval()
    with torch.no_grad():
        model.get_classifier().weight.zero_()
    version = registry.register(model, {**binary_card, "name": "blind"})
    return f"blind@{version}"


def test_explain_flags_an_empty_cam_instead_of_a_silent_zero(
    blind_ref, rng, tissue_like, tmp_path, capsys
) -> None:
    out = _explain_against_a_square_roi(blind_ref, tissue_like(rng, 64, 64), tmp_path)
    assert {r["method"]: r["cam_empty"] for r in _rows(out)} == {
        "gradcam": "True",
        "eigencam": "False",
    }
    printed = capsys.readouterr()
    assert "empty CAM" in printed.out
    assert "warning: gradcam CAM is empty" in printed.err and "a.png" in printed.err
    assert "eigencam" not in printed.err


def _evaluate_gradcam(model_ref: str, folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``pathreview evaluate-cam --methods gradcam`` over a MIAS folder; (table, per-image) CSVs."""
    out, per_image = tmp_path / "table.csv", tmp_path / "per_image.csv"
    argv = ["evaluate-cam", "--mias", str(folder), "--model", model_ref, "--device", "cpu",
            "--allow-modality-mismatch", "--methods", "gradcam",
            "--out", str(out), "--per-image", str(per_image)]  # fmt: skip
    assert main(argv) == 0
    return out, per_image


def test_evaluate_cam_counts_and_names_the_images_with_an_empty_cam(
    blind_ref, rng, tmp_path, capsys
) -> None:
    out, per_image = _evaluate_gradcam(blind_ref, _mias_folder(tmp_path / "mias", rng), tmp_path)
    assert _rows(out)[0]["n_cam_empty"] == "2"
    assert [r["cam_empty"] for r in _rows(per_image)] == ["True", "True"]
    err = capsys.readouterr().err
    assert "gradcam CAM is empty" in err and "mdb001.png, mdb002.png" in err


def test_evaluate_cam_says_where_it_wrote_each_csv(binary_ref, rng, tmp_path, capsys) -> None:
    out, per_image = _evaluate_gradcam(binary_ref, _mias_folder(tmp_path / "mias", rng), tmp_path)
    printed = capsys.readouterr().out.splitlines()
    assert f"wrote {out}" in printed and f"wrote {per_image}" in printed


def test_explain_says_where_it_wrote_its_csv(binary_ref, rng, tissue_like, tmp_path, capsys):
    image = _write_png(tmp_path / "a.png", tissue_like(rng, 64, 64))
    roi = write_geojson_rois(
        tmp_path / "roi.geojson", [Roi(np.array([[8, 8], [8, 40], [40, 40], [40, 8]]), "rectangle")]
    )
    out = tmp_path / "scores.csv"
    argv = ["explain", str(image), "--model", binary_ref, "--device", "cpu",
            "--roi", str(roi), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out.splitlines()


def test_evaluate_cam_unknown_method_is_rejected(binary_ref, rng, tmp_path, capsys) -> None:
    folder = _mias_folder(tmp_path / "mias", rng)
    argv = ["evaluate-cam", "--mias", str(folder), "--model", binary_ref, "--methods", "nosuchcam",
            "--allow-modality-mismatch"]  # fmt: skip
    assert main(argv) == 2
    assert "unknown CAM method" in capsys.readouterr().err


def test_the_readme_names_every_predictions_csv_column(binary_ref, rng, tissue_like, tmp_path):
    image = _write_png(tmp_path / "img.png", tissue_like(rng, 70, 90))
    out = tmp_path / "out"
    assert main(["predict", str(image), "--model", binary_ref, "--out", str(out)]) == 0
    with (out / "predictions.csv").open(newline="") as handle:
        header = next(csv.reader(handle))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("# predictions.csv: "))
    documented = [c.strip() for c in line.split(":", 1)[1].split(",")]
    assert "p_<class>…" in documented
    at = documented.index("p_<class>…")
    documented[at : at + 1] = ["p_benign", "p_malignant"]
    assert [c.split(" ")[0] for c in documented] == header


@pytest.fixture
def coarse_ref(registry, binary_card) -> str:
    """``coarse@1``: a resnet18 read at 32 px, where its CAM layer (stride 32) is 1×1."""
    torch.manual_seed(0)
    card = {**binary_card, "name": "coarse", "input_size": [3, 32, 32]}
    return f"coarse@{registry.register(create_model('resnet18', 2).eval(), card)}"


def test_explain_with_a_one_by_one_cam_layer_says_so_instead_of_scoring_flat_maps(
    coarse_ref, rng, tissue_like, tmp_path, capsys
) -> None:
    """It used to print IoU 0 per method, each marked "empty CAM"."""
    image = _write_png(tmp_path / "a.png", tissue_like(rng, 64, 64))
    roi = write_geojson_rois(
        tmp_path / "roi.geojson", [Roi(np.array([[8, 8], [8, 40], [40, 40], [40, 8]]), "rectangle")]
    )
    argv = ["explain", str(image), "--model", coarse_ref, "--device", "cpu",
            "--method", "gradcam,eigencam", "--roi", str(roi)]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"model {coarse_ref}: this model's CAM layer is 1×1 at 32 px: CAMs cannot " in (
        captured.err
    )
    assert "use patch maps" in captured.err and "IoU" not in captured.out


def test_a_refused_explain_leaves_no_folder_for_its_out_csv(
    coarse_ref, rng, tissue_like, tmp_path
) -> None:
    """The 1×1 CAM-layer refusal comes after --out is checked: it used to leave reports/ empty."""
    image = _write_png(tmp_path / "a.png", tissue_like(rng, 64, 64))
    roi = write_geojson_rois(
        tmp_path / "roi.geojson", [Roi(np.array([[8, 8], [8, 40], [40, 40], [40, 8]]), "rectangle")]
    )
    out = tmp_path / "reports" / "explain" / "scores.csv"
    argv = ["explain", str(image), "--model", coarse_ref, "--device", "cpu",
            "--roi", str(roi), "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    assert not (tmp_path / "reports").exists()


def test_a_refused_evaluate_cam_leaves_no_folder_for_its_csvs(coarse_ref, rng, tmp_path) -> None:
    folder = _mias_folder(tmp_path / "mias", rng)
    out, per_image = tmp_path / "summary" / "table.csv", tmp_path / "per" / "images.csv"
    argv = ["evaluate-cam", "--mias", str(folder), "--model", coarse_ref, "--device", "cpu",
            "--allow-modality-mismatch", "--methods", "gradcam",
            "--out", str(out), "--per-image", str(per_image)]  # fmt: skip
    assert main(argv) == 2
    assert not (tmp_path / "summary").exists() and not (tmp_path / "per").exists()


def test_the_analyze_dock_keeps_the_prediction_and_says_why_a_one_by_one_cam_is_left_out(
    coarse_ref, rng, tissue_like
) -> None:
    """It used to add a flat CAM layer; now no CAM layer, and the reason beside the result."""
    from napari_pathreview.inference.analysis import AnalysisRequest, AnalysisResult, analyse

    request = AnalysisRequest(model_ref=coarse_ref, device="cpu", qc=False)
    result = list(analyse(request, tissue_like(rng, 64, 64), modality="histology"))[-1]
    assert isinstance(result, AnalysisResult) and result.cam is None
    assert set(result.probabilities) == {"benign", "malignant"}
    assert "CAM layer is 1×1 at 32 px: CAMs cannot localise" in result.cam_note


def test_predict_cam_with_a_one_by_one_cam_layer_writes_the_probabilities_and_says_why_once(
    coarse_ref, rng, tissue_like, tmp_path, capsys
) -> None:
    """It used to refuse the whole command (exit 2, no predictions); now the probabilities are
    written, the CAMs skipped with one line naming the model and why, and the exit status is
    1, as for any partial result."""
    images = [_write_png(tmp_path / f"{n}.png", tissue_like(rng, 64, 64)) for n in "ab"]
    out = tmp_path / "results"
    argv = ["predict", *map(str, images), "--model", coarse_ref, "--device", "cpu",
            "--cam", "gradcam", "--out", str(out)]  # fmt: skip
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    (line,) = [x for x in captured.err.splitlines() if "CAMs cannot localise" in x]
    assert line.startswith(f"pathreview predict: no CAMs (gradcam): model {coarse_ref}: this ")
    assert "CAM layer is 1×1 at 32 px" in line and "probabilities are written" in line
    rows = _rows(out / "predictions.csv")
    assert [r["path"] for r in rows] == [str(p) for p in images]
    for row in rows:
        assert float(row["p_benign"]) + float(row["p_malignant"]) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted_label"] in ("benign", "malignant")
        assert row["status"] == "error" and row["error"].startswith("CAM: model coarse@1: ")
    assert not list(out.glob("*.npy")) and not list(out.glob("*_gradcam.png"))


def test_predict_cam_with_a_one_by_one_cam_layer_still_refuses_an_unknown_target_class(
    coarse_ref, rng, tissue_like, tmp_path
) -> None:
    """The CAM options are checked before the CAM grid: a typo still stops the command."""
    image = _write_png(tmp_path / "a.png", tissue_like(rng, 64, 64))
    argv = ["predict", str(image), "--model", coarse_ref, "--device", "cpu", "--cam", "gradcam",
            "--target-class", "cancer", "--out", str(tmp_path / "results")]  # fmt: skip
    assert main(argv) == 2
    assert not (tmp_path / "results").exists()


def test_evaluate_cam_with_tta_scores_each_film_as_explain_does_with_the_same_tta(
    binary_ref, rng, tmp_path
) -> None:
    """``--tta`` decides the predicted class each CAM explains; evaluate-cam had no --tta."""
    folder = _mias_folder(tmp_path / "mias", rng)
    per_image = tmp_path / "per_image.csv"
    argv = ["evaluate-cam", "--mias", str(folder), "--model", binary_ref, "--device", "cpu",
            "--allow-modality-mismatch", "--methods", "gradcam", "--tta", "flips",
            "--per-image", str(per_image)]  # fmt: skip
    assert main(argv) == 0
    for row in _rows(per_image):
        scores = tmp_path / f"{row['image']}.csv"
        argv = ["explain", str(folder / row["image"]), "--model", binary_ref, "--device", "cpu",
                "--allow-modality-mismatch", "--method", "gradcam", "--tta", "flips",
                "--mias-info", str(folder / "Info.txt"), "--out", str(scores)]  # fmt: skip
        assert main(argv) == 0
        (explained,) = _rows(scores)
        assert explained["target"] == row["target"]
        for score in ("iou", "dice", "pointing", "energy"):
            assert float(explained[score]) == pytest.approx(float(row[score]), abs=1e-9)
