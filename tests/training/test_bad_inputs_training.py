"""Bad recipes, overrides, manifests and run folders: refused before any image is decoded.

Every case is generated in the test. Library cases assert the error type and that the
message names the key/file; CLI cases run the console script and assert a non-zero exit,
the name in stderr and no traceback.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_pathreview.errors import PathReviewError, WeightsError
from napari_pathreview.training.datasets import DatasetError, Sample, from_csv
from napari_pathreview.training.label_checks import LabelError, check_labels
from napari_pathreview.training.recipe import RecipeError, load_recipe

CLI = [sys.executable, "-m", "napari_pathreview.cli"]
MINIMAL = {"data": {"source": "folder", "root": "x"}}
BIG = "1" + "0" * 400  # an integer beyond any float

# (override, text the error must contain: the key and the offending value)
OVERRIDES = [
    ("optim.lr=0", "optim.lr=0"),
    ("optim.lr=-0.1", "optim.lr=-0.1"),
    ("optim.lr=.nan", "optim.lr=nan"),
    ("optim.num_workers=-1", "optim.num_workers=-1"),
    ("seed=-1", "seed=-1"),
    ("seed=99999999999", "seed=99999999999"),
    ("data.subset=-3", "data.subset=-3"),
    ("data.subset=0", "data.subset=0"),
    ("data.image_size=512", "data.image_size=512"),  # > data.resize below
    ("eval.bootstrap=-1", "eval.bootstrap=-1"),
    ("eval.bootstrap=100000000", "eval.bootstrap=100000000"),
    ("optim.momentum=1.5", "optim.momentum=1.5"),
    ("loss.label_smoothing=1", "loss.label_smoothing=1"),
    ("phases.0.epochs=-2", "phases.0.epochs"),
    ("ema.decay=1", "ema.decay=1"),
    ("loss.class_weights=[1, -2]", "loss.class_weights"),
    ("loss.class_weights=[1, .inf]", "loss.class_weights"),
    ("data.disagreement_weight=-1", "data.disagreement_weight=-1"),
    ("register.name=../escape", "register.name='../escape'"),
    ("register.name=has space", "register.name='has space'"),
    ("optim.lr=fast", "optim.lr"),
    ("optim.batch_size=0", "optim.batch_size"),
    ("data.intensity=breast", "data.intensity='breast'"),  # MINIMAL is histology
    ("data.intensity=equalise", "data.intensity"),
    ("data.qc_blur_threshold=.inf", "data.qc_blur_threshold=inf: must be a finite number"),
    ("data.qc_tissue_fraction=.nan", "data.qc_tissue_fraction=nan: must be a finite number"),
    # an integer no float holds (used to raise OverflowError with a traceback)
    (f"data.qc_blur_threshold={BIG}", "data.qc_blur_threshold: must be a finite number"),
    (f"seed={BIG}", "seed: must be a finite number"),
    (f"loss.class_weights=[1, {BIG}]", "loss.class_weights"),
    # values YAML itself cannot read (used to raise ValueError with a traceback)
    (f"data.qc_blur_threshold=1{'0' * 5000}", "override data.qc_blur_threshold=1"),
    ("name=2020-13-45", "override name=2020-13-45: cannot read it"),
]


def _id(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:30]}…({len(text)} chars)"


@pytest.mark.parametrize(("override", "named"), OVERRIDES, ids=[_id(o) for o, _ in OVERRIDES])
def test_bad_override_is_refused_naming_key_value_and_range(override, named) -> None:
    recipe = {**MINIMAL, "data": {**MINIMAL["data"], "resize": 256}}
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe, [override])
    assert named in str(caught.value)


def test_qc_is_refused_for_a_mammogram_recipe_before_it_drops_every_film() -> None:
    with pytest.raises(RecipeError, match=r"data\.qc drops images failing H&E .*'mammogram'"):
        load_recipe(MINIMAL, ["modality=mammogram", "data.qc=true"])


def test_range_message_gives_the_allowed_range() -> None:
    with pytest.raises(RecipeError, match=r"eval\.bootstrap=-1 is outside \[0, 100000\]"):
        load_recipe(MINIMAL, ["eval.bootstrap=-1"])


def test_recipe_name_the_registry_refuses_is_caught_when_no_register_name() -> None:
    with pytest.raises(RecipeError, match="name='bad/name'"):
        load_recipe({**MINIMAL, "name": "bad/name"})


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


RECIPE_FILES = [
    ("binary.yaml", b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not a text file"),
    ("list.yaml", b"- data\n- model\n", "got a list"),
    ("scalar.yaml", b"42\n", "got a int"),
    ("broken.yaml", b"data: [1, 2\n", "not valid YAML"),
    ("deep.yaml", b"[" * 5000 + b"]" * 5000, "deep.yaml"),
    ("date.yaml", b"name: 2020-13-45\n", "not valid YAML (month must be in 1..12)"),
    ("huge.yaml", b"seed: 1" + b"0" * 5000 + b"\n", "not valid YAML"),
]


@pytest.mark.parametrize(
    ("name", "data", "says"), RECIPE_FILES, ids=[n for n, _, _ in RECIPE_FILES]
)
def test_unreadable_recipe_file_is_a_recipe_error_naming_it(tmp_path, name, data, says) -> None:
    path = _file(tmp_path, name, data)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert name in str(caught.value) and says in str(caught.value)


def _manifest(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("weight", ["-1", "nan", "inf", "heavy"])
def test_bad_sample_weight_is_refused_naming_the_row(tmp_path, weight) -> None:
    rows = [{"path": "a.png", "label": "benign", "weight": "1"}]
    rows.append({"path": "b.png", "label": "malignant", "weight": weight})
    manifest = _manifest(tmp_path, rows)
    with pytest.raises(DatasetError, match=rf"manifest\.csv:3: weight '{weight}'"):
        from_csv(manifest)


def test_non_utf8_manifest_is_refused_naming_it(tmp_path) -> None:
    manifest = _file(tmp_path, "manifest.csv", b"path,label\n\xff\xfe\x00bad,benign\n")
    with pytest.raises(DatasetError, match="manifest.csv"):
        from_csv(manifest)


def _samples(labels: list[str]) -> list[Sample]:
    return [Sample(f"img{i}.png", label, str(i)) for i, label in enumerate(labels)]


LABEL_CASES = [
    (["benign", "malignant", "cat", "benign"], "binary", ["'cat'", "rows 4"]),
    (["benign", "malignant", "Malignant"], "binary", ["'Malignant'", "'malignant'", "row"]),
    (["normal", "benign", "malignnat"], "mammogram", ["'malignnat'", "rows 4"]),
    (["DC", "LC", "XX"], "subtype", ["'XX'"]),
    (["dark", "light", "Light "], "mytask", ["'Light '", "'light'"]),
    (["dark", "light", "grey"], "binary", ["exactly 2 labels", "grey"]),
]


@pytest.mark.parametrize(("labels", "task", "named"), LABEL_CASES)
def test_labels_outside_the_task_are_refused_naming_labels_and_rows(labels, task, named) -> None:
    with pytest.raises(LabelError) as caught:
        check_labels(_samples(labels), task, "manifest.csv", first_row=2)
    assert all(text in str(caught.value) for text in named), str(caught.value)


@pytest.mark.parametrize(
    ("labels", "task"),
    [(["benign", "malignant"], "binary"), (["dark", "light"], "binary"), (["x", "y", "z"], "free")],
)
def test_consistent_labels_pass(labels, task) -> None:
    check_labels(_samples(labels), task, "manifest.csv")


def _cli(
    *args: str, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


def _recipe_file(tmp_path: Path, png_tree: Path) -> Path:
    text = (
        f"name: tinyrun\ndata:\n  source: folder\n  root: {png_tree}\n  image_size: 32\n"
        "  resize: 36\nmodel:\n  architecture: resnet18\noptim:\n  batch_size: 8\n"
        "schedule:\n  name: none\nphases:\n  - {name: all, epochs: 1}\neval:\n  bootstrap: 20\n"
    )
    return _file(tmp_path, "tiny.yaml", text.encode())


CLI_CASES = [
    (["--set", "optim.lr=-1"], "optim.lr=-1"),
    (["--set", "eval.bootstrap=100000000"], "eval.bootstrap"),
    (["--set", "data.subset=-1"], "data.subset=-1"),
    (["--set", "nosuch.key=1"], "nosuch"),
    (["--set", "model.architecture=resnet1800"], "unknown architecture 'resnet1800'"),
    (["--set", "data.qc_blur_threshold=.inf"], "data.qc_blur_threshold=inf: must be a finite"),
    (["--set", f"data.qc_blur_threshold={BIG}"], "data.qc_blur_threshold: must be a finite"),
    (["--out", "{file}"], "is a file"),
    (["--resume", "{missing}"], "no such run folder"),
]


@pytest.mark.parametrize(
    ("extra", "named"), CLI_CASES, ids=[_id(" ".join(e)) for e, _ in CLI_CASES]
)
def test_train_cli_refuses_before_work_without_traceback(
    png_tree, tmp_path, isolated_home, extra, named
):
    recipe = _recipe_file(tmp_path, png_tree)
    blocker = _file(tmp_path, "afile", b"x")
    extra = [e.format(file=blocker, missing=tmp_path / "nope") for e in extra]
    result = _cli("train", str(recipe), *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not (isolated_home / "runs").exists()


def test_typos_in_several_sections_are_all_named_in_one_refusal(tmp_path, isolated_home):
    """Only the first section's unknown keys were reported: each typo cost another run."""
    text = (
        f"data:\n  source: folder\n  root: {tmp_path / 'no-such-folder'}\n  imag_size: 32\n"
        "optim:\n  lrr: 0.001\nphases:\n  - {name: all, epoch: 1}\nevaluation: {}\n"
    )
    result = _cli("train", str(_file(tmp_path, "typos.yaml", text.encode())), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    for named in (
        "data.imag_size (did you mean data.image_size?)",
        "optim.lrr (did you mean optim.lr?)",
        "phases.0.epoch (did you mean phases.0.epochs?)",
        "evaluation",
    ):
        assert named in result.stderr
    assert "no-such-folder" not in result.stderr  # refused before the data is looked at
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not (isolated_home / "runs").exists()


def test_resume_of_a_run_whose_recipe_yaml_is_damaged_names_it(tmp_path) -> None:
    """A run folder's recipe.yaml cut short (a full disk) used to end `train --resume` in a
    yaml.parser.ParserError traceback."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    saved = _file(run_dir, "recipe.yaml", b"name: tinyrun\ndata: {source: folder, root: [x\n")
    result = _cli("train", "--resume", str(run_dir), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{saved}: not valid YAML" in result.stderr and "Traceback" not in result.stderr


def _missing_image(tmp_path: Path, png_tree: Path) -> tuple[list[str], str]:
    images = sorted(png_tree.rglob("*.png"))
    rows = [{"path": str(p), "label": p.parent.name} for p in images]
    rows[3]["path"] += ".gone"
    manifest = _manifest(tmp_path, rows)
    return ["data.source=csv", f"data.root={manifest}"], ".png.gone"


def _missing_root(tmp_path: Path, png_tree: Path) -> tuple[list[str], str]:
    return [f"data.root={tmp_path / 'no-such-folder'}"], "no-such-folder"


@pytest.mark.parametrize("refusal", [_missing_image, _missing_root], ids=["image", "data-root"])
def test_a_run_refused_for_its_data_leaves_no_run_folder(png_tree, tmp_path, refusal):
    """Each such refusal used to leave a timestamped folder holding only recipe.yaml."""
    overrides, named = refusal(tmp_path, png_tree)
    sets = [arg for override in overrides for arg in ("--set", override)]
    runs = tmp_path / "runs"
    result = _cli("train", str(_recipe_file(tmp_path, png_tree)), *sets, "--out", str(runs))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert named in result.stderr
    assert not runs.exists() or list(runs.iterdir()) == []


def test_an_image_listed_under_two_patients_is_refused_before_training(png_tree, tmp_path):
    """The same file under two patient_ids used to be split as two patients' images: it went
    to validation under one and to the test set under the other, silently."""
    images = sorted(png_tree.rglob("*.png"))
    rows = [{"path": str(p), "label": p.parent.name, "patient_id": f"P{i}"}
            for i, p in enumerate(images)]  # fmt: skip
    rows.append({**rows[0], "patient_id": "P-other"})
    manifest = _manifest(tmp_path, rows)
    runs = tmp_path / "runs"
    result = _cli("train", str(_recipe_file(tmp_path, png_tree)), "--set", "data.source=csv",
                  "--set", f"data.root={manifest}", "--out", str(runs))  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{manifest}:{len(rows) + 1}: {images[0]} is listed at line 2 under patient_id 'P0'" in (
        result.stderr
    )
    assert not runs.exists() or list(runs.iterdir()) == []


def test_a_bad_label_in_the_reviews_is_blamed_on_the_reviews_not_the_recipes_data(
    png_tree, tmp_path
):
    """With --from-reviews the labels come from the review store: naming the recipe's own
    manifest (which holds no such label) sent the user to the wrong file."""
    from napari_pathreview.review import ReviewStore

    images = sorted(png_tree.rglob("*.png"))
    own = _manifest(tmp_path, [{"path": str(p), "label": p.parent.name} for p in images])
    with ReviewStore() as store:  # the default store, in the isolated home
        for i, path in enumerate(images):
            label = "drak" if i == 2 else path.parent.name
            store.add_review(store.add_image(path, "histology"), "dr-a", label, None)
    recipe = _recipe_file(tmp_path, png_tree)
    result = _cli(
        "train", str(recipe), "--from-reviews", "--set", "data.source=csv",
        "--set", f"data.root={own}", "--set", "data.task=binary", "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.returncode == 2 and "drak" in result.stderr, result.stderr
    assert "the reviews in the default review store" in result.stderr
    assert str(own) not in result.stderr


def test_resuming_a_run_that_is_still_training_is_refused(png_tree, tmp_path):
    """A second process on a live run folder (a requeued job, another terminal) would
    interleave checkpoints with the first and register the run twice."""
    import time

    recipe = _recipe_file(tmp_path, png_tree)
    runs = tmp_path / "runs"
    first = subprocess.Popen(
        [*CLI, "train", str(recipe), "--set", "phases.*.epochs=100000", "--out", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(1200):  # until the first run has started its fold
            if list(runs.glob("*/fold0")) or first.poll() is not None:
                break
            time.sleep(0.1)
        assert first.poll() is None, "the first run ended before the check"
        run_dir = next(runs.iterdir())
        recipe_before = (run_dir / "recipe.yaml").read_bytes()
        second = _cli("train", "--resume", str(run_dir))
    finally:
        first.terminate()
        first.wait(timeout=60)
    assert second.returncode == 2, second.stderr
    assert "in use by another `pathreview train`" in second.stderr
    assert "Traceback" not in second.stderr
    assert (run_dir / "recipe.yaml").read_bytes() == recipe_before


def test_train_cli_refuses_an_unavailable_device_before_reading_images(png_tree, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present here, so device=cuda is available")
    recipe = _recipe_file(tmp_path, png_tree)
    result = _cli("train", str(recipe), "--set", "device=cuda", "--out", str(tmp_path / "runs"))
    assert result.returncode == 2 and "cuda" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_manifest_with_a_typo_label_is_refused_before_training(tmp_path) -> None:
    from napari_pathreview.training import run_recipe

    rows = [{"path": f"{i}.png", "label": lab} for i, lab in enumerate(["benign", "cat"])]
    manifest = _manifest(tmp_path, rows)
    recipe = {"data": {"source": "csv", "root": str(manifest)}, "register": {"enabled": False}}
    with pytest.raises(LabelError, match=r"'cat' at rows 3"):
        run_recipe(recipe, out_dir=tmp_path / "runs")


@pytest.fixture
def finished_run(png_tree, tmp_path):
    from napari_pathreview.training import run_recipe

    recipe = load_recipe(_recipe_file(tmp_path, png_tree))
    return run_recipe(recipe.to_dict(), out_dir=tmp_path / "runs")


def test_resuming_a_finished_run_registers_no_duplicate(finished_run) -> None:
    from napari_pathreview.registry import ModelRegistry
    from napari_pathreview.training import run_recipe

    assert finished_run.registered == "tinyrun@1"
    again = run_recipe(None, resume=finished_run.run_dir)
    assert again.registered == "tinyrun@1"
    assert ModelRegistry().versions("tinyrun") == ["1"]


def test_truncated_checkpoint_on_resume_says_what_to_do(finished_run) -> None:
    from napari_pathreview.training import run_recipe

    fold = finished_run.run_dir / "fold0"
    (fold / "fold.json").unlink()  # the fold is unfinished again
    checkpoint = fold / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(WeightsError, match=r"last\.pt is truncated or corrupt.*delete it"):
        run_recipe(None, resume=finished_run.run_dir)
    assert issubclass(WeightsError, PathReviewError)


def _offline(tmp_path: Path, weights: Path | None = None) -> dict:
    """The environment of a machine that cannot reach timm's hub and has nothing cached."""
    env = {k: v for k, v in os.environ.items() if k != "PATHREVIEW_PRETRAINED_DIR"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"))
    if weights is not None:
        env["PATHREVIEW_PRETRAINED_DIR"] = str(weights)
    return env


def test_train_without_pretrained_weights_is_refused_before_any_image_is_decoded(
    png_tree, tmp_path
):
    """It used to fail only after decoding the data and a minute of hub retries."""
    (png_tree / "dark" / "dark_0.png").write_bytes(b"not a png")  # decoding it would fail
    runs = tmp_path / "runs"
    result = _cli(
        "train", str(_recipe_file(tmp_path, png_tree)), "--set", "model.pretrained=true",
        "--out", str(runs), env=_offline(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "asks for pretrained weights (model.pretrained: true)" in result.stderr
    assert "no pretrained weights for resnet18" in result.stderr
    assert "PATHREVIEW_PRETRAINED_DIR" in result.stderr and "convert-weights" in result.stderr
    assert "dark_0" not in result.stderr
    assert not runs.exists()


def test_train_with_a_local_safetensors_file_goes_past_the_weights_check(png_tree, tmp_path):
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "pretrained"
    weights.mkdir()
    save_file(timm.create_model("resnet18").state_dict(), str(weights / "resnet18.safetensors"))
    (png_tree / "dark" / "dark_0.png").write_bytes(b"not a png")
    result = _cli(
        "train", str(_recipe_file(tmp_path, png_tree)), "--set", "model.pretrained=true",
        "--out", str(tmp_path / "runs"), env=_offline(tmp_path, weights),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "dark_0" in result.stderr  # the run reached the data
    assert "pretrained weights" not in result.stderr


def test_a_relative_pretrained_path_is_read_beside_the_recipe_not_the_working_folder(
    png_tree, tmp_path
):
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "pretrained"
    weights.mkdir()
    save_file(timm.create_model("resnet18").state_dict(), str(weights / "resnet18.safetensors"))
    (png_tree / "dark" / "dark_0.png").write_bytes(b"not a png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _cli(
        "train", str(_recipe_file(tmp_path, png_tree)), "--set", "model.pretrained=true",
        "--set", "model.kwargs.pretrained_path=pretrained", "--out", str(tmp_path / "runs"),
        cwd=elsewhere, env=_offline(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "dark_0" in result.stderr  # the weights beside the recipe were found: data reached
    assert "pretrained weights" not in result.stderr


def test_the_imagenet_mias_recipe_without_its_weights_is_refused_before_any_film_is_read(
    tmp_path,
):
    recipe = Path(__file__).resolve().parents[2] / "training" / "mias_lesion_mil_imagenet.yaml"
    empty = tmp_path / "films"
    empty.mkdir()  # reading it would fail differently: no MIAS info file
    result = _cli(
        "train", str(recipe), "--set", f"data.root={empty}", "--out", str(tmp_path / "runs"),
        env=_offline(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "no pretrained weights for tf_efficientnet_lite0" in result.stderr
    assert "convert-weights" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_imagenet_mias_recipe_encodes_patches_with_the_weights_it_finds(tmp_path, monkeypatch):
    import timm
    import torch
    from safetensors.torch import save_file

    from napari_pathreview.training.lesion import build_patch_model
    from napari_pathreview.training.recipe import load_recipe

    source = timm.create_model("tf_efficientnet_lite0")  # random: distinct from any other draw
    save_file(source.state_dict(), str(tmp_path / "tf_efficientnet_lite0.safetensors"))
    monkeypatch.setenv("PATHREVIEW_PRETRAINED_DIR", str(tmp_path))
    recipe = load_recipe(
        Path(__file__).resolve().parents[2] / "training" / "mias_lesion_mil_imagenet.yaml"
    )
    model = build_patch_model(recipe, 3, 512, negative_class=0)
    stem = source.state_dict()["conv_stem.weight"]
    loaded = [t for k, t in model.state_dict().items() if k.endswith("conv_stem.weight")]
    assert len(loaded) == 1 and torch.equal(loaded[0], stem)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "model.kwargs.bogus=1",
            "model.architecture 'resnet18' with model.kwargs {'bogus': 1} cannot be built: "
            "ResNet.__init__() got an unexpected keyword argument 'bogus'",
        ),
        (
            "model.kwargs.drop_path_rate=1.5",
            "model.kwargs.drop_path_rate=1.5 is outside [0, 1): a drop rate is a probability",
        ),
    ],
)
def test_model_kwargs_the_architecture_refuses_are_named_before_any_image_is_decoded(
    png_tree, tmp_path, setting, message
):
    """Both used to end in a traceback: one when the model was built after decoding, the
    other in the first training step."""
    (png_tree / "dark" / "dark_0.png").write_bytes(b"not a png")  # decoding it would fail
    runs = tmp_path / "runs"
    result = _cli(
        "train", str(_recipe_file(tmp_path, png_tree)), "--set", setting, "--out", str(runs)
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr and "dark_0" not in result.stderr
    assert not runs.exists()


def test_cam_iou_at_an_image_size_with_a_one_by_one_cam_layer_is_refused_before_a_run_folder(
    png_tree, tmp_path
):
    """It used to train the whole run and only then report n_cam_empty: every CAM was flat."""
    (png_tree / "dark" / "dark_0.png").write_bytes(b"not a png")  # decoding it would fail
    runs = tmp_path / "runs"
    result = _cli(
        "train", str(_recipe_file(tmp_path, png_tree)), "--set", "eval.cam_iou=true",
        "--out", str(runs),
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert (
        "eval.cam_iou needs a CAM layer of at least 2×2, but model.architecture 'resnet18' has "
        "a 1×1 one at data.image_size 32, so every CAM would be flat; set data.image_size to "
        "at least 33" in result.stderr
    )
    assert "dark_0" not in result.stderr and not runs.exists()


def test_cam_iou_at_an_image_size_with_a_two_by_two_cam_layer_is_accepted(png_tree, tmp_path):
    from napari_pathreview.training.build import require_buildable, require_cam_grid

    recipe = load_recipe(
        _recipe_file(tmp_path, png_tree),
        ["eval.cam_iou=true", "data.image_size=64", "data.resize=72"],
    )
    require_cam_grid(recipe, require_buildable(recipe))


# lesion recipes score patch maps over whole films (no fixed input size): not this rule's
SHIPPED = [
    path
    for path in sorted((Path(__file__).resolve().parents[2] / "training").glob("*.yaml"))
    if not load_recipe(path).lesion.enabled
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_whole_image_recipe_has_a_cam_layer_that_can_localise(path):
    """With eval.cam_iou switched on, whether or not the recipe asks for it."""
    from napari_pathreview.training.build import require_buildable, require_cam_grid

    recipe = load_recipe(path, ["eval.cam_iou=true"])
    require_cam_grid(recipe, require_buildable(recipe))


def test_a_task_class_without_an_image_is_refused_before_decoding(tiny_recipe, tmp_path):
    """Task 'mammogram' over BreaKHis (benign/malignant only) used to train and register a
    three-class model whose 'normal' output had never seen an image."""
    from napari_pathreview.training import run_recipe

    recipe = tiny_recipe(data={**tiny_recipe()["data"], "task": "mammogram"})
    with pytest.raises(DatasetError, match="'normal' of task 'mammogram' have no image"):
        run_recipe(recipe, out_dir=tmp_path / "runs")
    assert not list((tmp_path / "runs").iterdir())


def test_resume_refuses_a_training_setting_and_leaves_the_run_as_it_was(png_tree, tmp_path):
    """`--resume RUN --set optim.lr=0.5` used to rewrite recipe.yaml (and so the card's
    recipe) with a learning rate none of the finished folds was trained with."""
    recipe = _recipe_file(tmp_path, png_tree)
    trained = _cli("train", str(recipe), "--set", "register.enabled=false", "--out", str(tmp_path))
    assert trained.returncode == 0, trained.stderr
    run_dir = next(tmp_path.glob("tinyrun-*"))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = _cli("train", "--resume", str(run_dir), "--set", "optim.lr=0.5")
    assert result.returncode == 2 and "--resume --set optim.lr" in result.stderr
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def _breakhis_manifest(shared_data: Path, path: Path, extra: str = "") -> Path:
    images = sorted((shared_data / "breakhis").glob("SOB_*.png"))
    rows = [f"{p},{'malignant' if 'SOB_M_' in p.name else 'benign'}" for p in images]
    path.write_text("path,label\n" + "\n".join(rows) + "\n" + extra)
    return path


def test_a_mammogram_in_a_histology_manifest_is_refused_before_decoding(
    tiny_recipe, shared_data, tmp_path
):
    """At data.pixel_size 0.5 µm a MIAS film (200 µm/px) asked OpenCV for a 500 GB canvas
    and ended in a traceback; without it the film trained as a stretched histology patch."""
    from napari_pathreview.inference.analysis import ModalityMismatchError
    from napari_pathreview.training import run_recipe

    film = shared_data / "mias" / "mdb001.pgm"
    manifest = _breakhis_manifest(shared_data, tmp_path / "m.csv", f"{film},benign\n")
    recipe = tiny_recipe(data={**tiny_recipe()["data"], "source": "csv", "root": str(manifest)})
    with pytest.raises(ModalityMismatchError, match=r"mdb001\.pgm is a mammogram image"):
        run_recipe(recipe, out_dir=tmp_path / "runs")
    assert not list((tmp_path / "runs").iterdir())


def test_a_bad_external_test_manifest_is_refused_before_training(
    tiny_recipe, shared_data, tmp_path
):
    """data.external_test is scored after training; a label the model cannot have used to
    end the run there, after every fold had trained."""
    from napari_pathreview.training import run_recipe

    external = tmp_path / "external.csv"
    external.write_text(f"path,label\n{shared_data / 'breakhis' / 'SOB_B_A-14-22549AB-40-001.png'},"
                        "lobular\n")  # fmt: skip
    recipe = tiny_recipe(data={**tiny_recipe()["data"], "external_test": str(external)})
    with pytest.raises(DatasetError, match=r"external\.csv: label 'lobular'"):
        run_recipe(recipe, out_dir=tmp_path / "runs")
    assert not list((tmp_path / "runs").iterdir())
