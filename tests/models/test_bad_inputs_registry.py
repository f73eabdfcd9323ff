"""Bad cards and weights at import and load, and the registry's clean-up after a killed writer.

Every bad model is made here from a real exported one, edited the way a hand or a broken
copy would. Each case asserts the error type, that the message names the field/file, and
that nothing entered the registry.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from napari_pathreview.errors import InvalidInputError, WeightsError
from napari_pathreview.models import create_model
from napari_pathreview.registry import ModelCard, ModelCardError, ModelRegistry, sha256_file

CARD = {
    "name": "tiny",
    "task": "binary",
    "classes": ["benign", "malignant"],
    "modality": "histology",
}


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("test_resnet", 2).eval()


@pytest.fixture
def source(tmp_path: Path, tiny_model) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "source")
    registry.register(tiny_model, CARD)
    return registry


@pytest.fixture
def exported(source: ModelRegistry, tmp_path: Path) -> Path:
    return source.export("tiny", None, tmp_path / "out")


@pytest.fixture
def target(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "target")


def _edit_card(folder: Path, **changes) -> None:
    card_path = folder / "card.yaml"
    card = yaml.safe_load(card_path.read_text())
    card.update(changes)
    card_path.write_text(yaml.safe_dump(card))


def _rehash(folder: Path) -> None:
    _edit_card(folder, weights_sha256=sha256_file(folder / "weights.safetensors"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("mean", [float("nan")] * 3), ("std", [0.2, float("inf"), 0.2]), ("std", [0.2, 0.0, 0.2])],
    ids=["mean-nan", "std-inf", "std-zero"],
)
def test_card_with_non_finite_or_zero_normalisation_is_refused(field, value) -> None:
    fields = {**CARD, "architecture": "test_resnet", "input_size": [3, 32, 32], field: value}
    with pytest.raises(ModelCardError, match=field):
        ModelCard.from_dict(fields)


def test_binary_task_with_three_classes_is_refused() -> None:
    fields = {**CARD, "architecture": "test_resnet", "classes": ["a", "b", "c"]}
    with pytest.raises(ModelCardError, match="'binary'.*3"):
        ModelCard.from_dict(fields)


@pytest.mark.parametrize(
    ("changes", "error", "named"),
    [
        ({"mean": [".nan"]}, ModelCardError, "mean"),
        ({"architecture_kwargs": {"bogus_rate": 0.5}}, ModelCardError, "bogus_rate"),
        ({"task": "subtype", "classes": ["a", "b", "c"]}, WeightsError, "shapes differ"),
        ({"architecture": "resnet18"}, WeightsError, "tensors"),
    ],
    ids=["nan-mean", "unknown-kwarg", "wrong-class-count", "other-architecture"],
)
def test_import_refuses_a_model_that_would_not_load(exported, target, changes, error, named):
    if changes.get("mean") == [".nan"]:
        text = (exported / "card.yaml").read_text()
        card = yaml.safe_load(text)
        card["mean"] = ["NAN_HERE"] * 3
        (exported / "card.yaml").write_text(yaml.safe_dump(card).replace("NAN_HERE", ".nan"))
    else:
        _edit_card(exported, **changes)
    with pytest.raises(error, match=named):
        target.import_model(exported)
    assert target.names() == []
    assert not target.root.exists()  # not even an empty .tmp staging folder


def _forge_header(weights: Path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    "forge",
    [
        lambda w: w.write_bytes(w.read_bytes()[:-1000]),
        lambda w: w.write_bytes(struct.pack("<Q", 10**12) + b"{}"),
        lambda w: w.write_bytes(struct.pack("<Q", 5) + b"nope!"),
        lambda w: _forge_header(w, {"fc.weight": {"dtype": "F32", "shape": [2, 8],
                                                  "data_offsets": [0, 10**9]}}),
        lambda w: w.write_bytes(b"\x01\x02"),
    ],
    ids=["truncated", "header-longer-than-file", "header-not-json", "offsets-beyond", "2-bytes"],
)  # fmt: skip
def test_import_refuses_broken_safetensors_naming_the_file(exported, target, forge) -> None:
    weights = exported / "weights.safetensors"
    forge(weights)
    _rehash(exported)  # the checksum matches: only parsing can tell
    with pytest.raises(WeightsError, match="weights.safetensors"):
        target.import_model(exported)
    assert target.names() == []


def test_non_utf8_card_is_refused_at_load_naming_it(source) -> None:
    card_path = source.folder("tiny") / "card.yaml"
    card_path.write_bytes(card_path.read_bytes() + b"description: \xff\xfe\n")
    with pytest.raises(ModelCardError, match=r"card\.yaml is not UTF-8"):
        source.load("tiny")


def test_nan_mean_in_a_stored_card_is_refused_at_load(source) -> None:
    card_path = source.folder("tiny") / "card.yaml"
    card = yaml.safe_load(card_path.read_text())
    card["mean"] = ["NAN_HERE"] * len(card["mean"])
    card_path.write_text(yaml.safe_dump(card).replace("NAN_HERE", ".nan"))
    with pytest.raises(ModelCardError, match="mean"):
        source.load("tiny")


def test_models_import_cli_refuses_without_traceback(exported, tmp_path) -> None:
    _edit_card(exported, architecture_kwargs={"bogus_rate": 0.5})
    result = subprocess.run(
        [sys.executable, "-m", "napari_pathreview.cli", "models", "--registry",
         str(tmp_path / "cli"), "import", str(exported)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "bogus_rate" in result.stderr and "Traceback" not in result.stderr


MAMMOGRAM_QC = {**CARD, "name": "mammo", "modality": "mammogram", "qc": {"blur_threshold": 40}}


def test_registering_a_mammogram_model_with_qc_thresholds_is_refused(tiny_model, target) -> None:
    with pytest.raises(ModelCardError, match="'qc'.*mammogram.*remove 'qc'"):
        target.register(tiny_model, MAMMOGRAM_QC)
    assert target.names() == []


def test_models_import_refuses_a_mammogram_card_carrying_qc_on_one_line(tiny_model, tmp_path):
    """A hand-edited card: the thresholds would be silently ignored, so the import says so."""
    source = ModelRegistry(tmp_path / "source")
    source.register(tiny_model, {k: v for k, v in MAMMOGRAM_QC.items() if k != "qc"})
    exported = source.export("mammo", None, tmp_path / "out")
    _edit_card(exported, qc=MAMMOGRAM_QC["qc"])
    registry = tmp_path / "cli"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pathreview"), "models", "--registry",
         str(registry), "import", str(exported)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "card field 'qc'" in lines[0] and "'mammogram'" in lines[0]
    assert ModelRegistry(registry).names() == []


def _truncate_weights(folder: Path) -> None:
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # an interrupted copy


def _archive(folder: Path) -> Path:
    import tarfile

    archive = folder.with_name("model.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def _cut_short_archive(folder: Path) -> None:
    archive = _archive(folder)  # an interrupted download (used to end in an EOFError traceback)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])


IMPORT_CASES = {
    "truncated-weights-folder": (_truncate_weights, False, "does not match the SHA-256"),
    "truncated-weights-archive": (_truncate_weights, True, "does not match the SHA-256"),
    "card-field-archive": (lambda f: _edit_card(f, classes="one"), True, "classes"),
    "not-a-tar": (lambda f: f.with_name("model.tar.gz").write_bytes(b"x" * 600), None, "tar"),
    "archive-cut-short": (_cut_short_archive, None, "is cut short or damaged"),
}


@pytest.mark.parametrize(("damage", "as_archive", "says"), IMPORT_CASES.values(), ids=IMPORT_CASES)
def test_models_import_of_a_damaged_export_names_the_users_file_on_one_line(
    exported, tmp_path, damage, as_archive, says
) -> None:
    """The message names what the user gave (not the registry's hidden staging copy) and does
    not call a damaged copy 'altered after registration'."""
    damage(exported)
    given = exported if as_archive is False else exported.with_name("model.tar.gz")
    if as_archive:
        _archive(exported)
    exe = Path(sys.executable).parent / "pathreview"
    registry = tmp_path / "cli"
    result = subprocess.run(
        [str(exe), "models", "--registry", str(registry), "import", str(given)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert str(given) in lines[0] and says in lines[0]
    assert ".tmp" not in lines[0] and "after registration" not in lines[0]
    assert ModelRegistry(registry).names() == []


def test_a_refused_import_into_a_new_registry_leaves_no_folder_behind(exported, target) -> None:
    """A cut-short archive used to leave an empty ``.tmp`` staging folder in the registry."""
    _cut_short_archive(exported)
    with pytest.raises(InvalidInputError, match="cut short"):
        target.import_model(exported.with_name("model.tar.gz"))
    assert not target.root.exists()


def test_a_refused_import_leaves_an_existing_registry_as_it_was(source, exported) -> None:
    _cut_short_archive(exported)
    before = sorted(source.root.rglob("*"))
    with pytest.raises(InvalidInputError, match="cut short"):
        source.import_model(exported.with_name("model.tar.gz"))
    assert sorted(source.root.rglob("*")) == before


def test_a_valid_export_still_imports_and_loads(exported, target) -> None:
    assert target.import_model(exported) == ("tiny", "1")
    target.load("tiny")


def test_stale_staging_folders_are_removed_on_the_next_write(target, tiny_model) -> None:
    tmp = target.root / ".tmp"
    stale, fresh = tmp / "killed-register", tmp / "running-register"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "weights.safetensors").write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    target.register(tiny_model, CARD)
    assert not stale.exists()
    assert fresh.exists()  # a writer still filling its folder is left alone


def test_a_version_folder_copied_under_another_name_is_refused_naming_its_card(
    source: ModelRegistry,
) -> None:
    import shutil

    shutil.copytree(source.root / "tiny" / "1", source.root / "other" / "1")
    with pytest.raises(ModelCardError, match=r"other/1/card.yaml names tiny@1 .*other@1"):
        source.load("other")
    assert [row.ref for row in source.list()] == ["tiny@1"]  # not listed as a model it is not
