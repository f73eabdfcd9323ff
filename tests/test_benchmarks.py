"""The scripts in benchmarks/ still run against the current code, at their smallest sizes.

CI does not run the benchmarks, so an API change would otherwise rot them unseen. Each test
runs a script's ``main`` (or, where even ``--quick`` takes minutes on a 2-core CPU, the
functions its ``main`` composes) at toy sizes; the figures are not checked, the output is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` as a module (benchmarks/ is not a package); its sibling
    imports (``_bench``) resolve as when the script runs, benchmarks/ being on ``sys.path``."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_review_store_benchmark_prints_each_writer_against_bare_sqlite(capsys) -> None:
    load("review_store").main(["--quick", "--pg-url", ""])
    out = capsys.readouterr().out
    assert "sqlite3 bare insert (reference)" in out
    assert "ReviewStore.add_review, SQLite" in out


def test_models_benchmark_times_a_timm_classifier_beside_its_bare_model(capsys) -> None:
    models = load("models")
    assert models.main(["--only", "resnet18", "--batches", "1", "--repeats", "1"]) == 0
    table = capsys.readouterr().out.split("| device |")[1]
    assert table.count("| cpu | resnet18 | resnet18 | 1 |") == 3  # fp32, channels_last, bf16


def test_models_benchmark_refuses_a_misspelt_architecture_with_a_suggestion(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load("models").main(["--only", "resnet5O"])
    assert exit_info.value.code == 2
    assert "did you mean" in capsys.readouterr().err


def test_models_benchmark_pairs_each_registered_architecture_with_its_declared_backbones() -> None:
    models = load("models")
    assert "patch_mil" not in models.default_names()
    assert models.reference_names("hybrid_effnetv2s_vitb16") == (
        "tf_efficientnetv2_s",
        "vit_base_patch16_224",
    )


def test_slide_inference_benchmark_skips_tiatoolbox_when_its_python_lacks_it(capsys) -> None:
    if importlib.util.find_spec("tiatoolbox") is not None:
        pytest.skip("this interpreter has tiatoolbox: it is no example of one without")
    argv = ["--edge", "512", "--input", "64", "--batch", "16", "--repeats", "1", "--workers", "1"]
    assert load("slide_inference").main([*argv, "--tia-python", sys.executable]) == 0
    out = capsys.readouterr().out
    assert "ours end to end" in out
    assert "bare forward on pre-extracted tiles" in out
    assert f"skipped: {sys.executable} cannot import tiatoolbox" in out


def test_slide_inference_benchmark_skips_a_tia_python_that_does_not_exist(tmp_path) -> None:
    note = load("slide_inference")._tia_unusable(str(tmp_path / "absent" / "python"))
    assert note.startswith("skipped: --tia-python")


def test_inference_benchmark_skips_score_cam_reference_without_pytorch_grad_cam(
    monkeypatch, tmp_path
) -> None:
    bench = load("inference")
    predictor = bench._predictor(bench._register("resnet18", 64, tmp_path), tmp_path, "cpu")
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # import raises ImportError
    [(name, _, _, note)] = bench.bench_scorecam(predictor, lambda: None)
    assert name == "ScoreCAM pytorch-grad-cam default"
    assert note.startswith("skipped: peer missing") and "pytorch_grad_cam" in note


@pytest.fixture
def small_svs(tmp_path) -> Path:
    slide_io = load("slide_io")
    image = slide_io.tissue_image(1024, 1024)
    return slide_io.write_aperio_svs(tmp_path / "slide.svs", image, mpp=0.25, n_levels=2)


def test_slide_io_benchmark_compares_our_tiles_with_openslide(small_svs) -> None:
    rows = load("slide_io")._compare(small_svs, 4, "SVS/JPEG")
    assert [name for name, _, _ in rows][:2] == [
        "SVS/JPEG L0 ours (tifffile) read_region",
        "SVS/JPEG L0 ours (tifffile) dask level (napari)",
    ]
    assert all(ref > 0 for _, _, ref in rows)


def test_slide_io_benchmark_skips_the_openslide_reference_when_it_is_missing(
    small_svs, monkeypatch, capsys
) -> None:
    slide_io = load("slide_io")
    monkeypatch.setitem(sys.modules, "openslide", None)  # import raises ImportError
    rows = slide_io._compare(small_svs, 4, "SVS/JPEG")
    assert rows and all(mine > 0 and np.isnan(ref) for _, mine, ref in rows)
    assert slide_io._forced(small_svs, 4, "SVS/JPEG") == []
    assert "OpenSlide reference skipped: peer missing" in capsys.readouterr().out


def test_label_outlines_benchmark_times_our_tracer_beside_opencv_on_each_workload(capsys) -> None:
    argv = ["--edge", "128", "--regions", "4", "--noise-edge", "32"]
    assert load("label_outlines").main(argv) == 0
    out = capsys.readouterr().out
    assert "ours / cv2" in out
    for workload in ("4 regions, 128²", "1 ragged region with holes, 128²", "random noise, 32²"):
        assert workload in out


def test_lesion_mil_benchmark_times_one_fold_model_beside_the_bare_encoder(tmp_path) -> None:
    bench = load("lesion_mil")
    films = bench._films(1, tmp_path)
    row = bench.bench(32, 1, films, tmp_path, repeats=1)
    assert row["patches"] == 225  # 15×15 patches of 64 px at stride 32 on a 512² film
    assert row["ours_s"] > 0 and row["bare_s"] > 0


def test_stain_benchmark_prints_what_a_failing_implementation_raised_under_the_table(
    capsys,
) -> None:
    stain = load("stain")
    rng = np.random.default_rng(0)
    target = rng.integers(40, 220, (64, 64, 3), dtype=np.uint8)
    image = rng.integers(40, 220, (96, 128, 3), dtype=np.uint8)

    def broken(_image: np.ndarray) -> np.ndarray:
        raise np.linalg.LinAlgError("SVD did not converge")

    peers = {("reinhard", "broken-peer"): broken}
    table, failures = stain.time_workloads(
        {"128x96": image}, peers, target, reps=1, methods=("reinhard",)
    )
    stain.print_table(table, ["128x96"])
    stain.print_failures(failures)
    out = capsys.readouterr().out
    assert "nan" in out.split("broken-peer")[1].splitlines()[0]
    assert "broken-peer        128x96: LinAlgError: SVD did not converge" in out


def test_slide_inference_benchmark_quick_keeps_the_sizes_given_explicitly() -> None:
    parse = load("slide_inference").parse_args
    args = parse(["--quick", "--edge", "2048", "--batch", "8"])
    assert (args.edge, args.batch) == (2048, 8)  # given: kept
    assert (args.input, args.repeats) == (64, 1)  # not given: --quick's
    assert (parse([]).edge, parse([]).repeats) == (4096, 3)


def test_slide_cam_benchmark_times_ours_beside_the_two_pass_way_and_the_bare_forward(
    capsys,
) -> None:
    argv = ["--edge", "384", "--input", "64", "--batch", "16", "--repeats", "1", "--device", "cpu"]
    assert load("slide_cam").main(argv) == 0
    out = capsys.readouterr().out
    for row in ("ours: one forward per tile", "two-pass", "slide cache", "bare forward"):
        assert row in out


def test_tiled_cam_benchmark_times_ours_beside_the_two_pass_way_and_the_bare_forward(
    capsys,
) -> None:
    argv = ["--edge", "192", "--input", "64", "--batch", "8", "--repeats", "1", "--device", "cpu"]
    assert load("tiled_cam").main(argv) == 0
    out = capsys.readouterr().out
    for row in ("ours: one forward per tile", "two-pass", "bare forward", "max |map difference|"):
        assert row in out
