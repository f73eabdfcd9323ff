"""`pathreview models ...` run in-process through the real argparse tree."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_pathreview.cli import main
from napari_pathreview.errors import DestinationExistsError
from napari_pathreview.models import create_model
from napari_pathreview.registry import ModelRegistry

CARD = {
    "name": "demo-histo",
    "task": "binary",
    "classes": ["benign", "malignant"],
    "modality": "histology",
    "metrics": {"test": {"roc_auc": 0.875, "accuracy": 0.8, "ci95": {}}, "leaky": False},
    "description": "demo model trained on sample_data",
}


@pytest.fixture
def registered() -> ModelRegistry:
    """A registry under the test's $PATHREVIEW_HOME holding demo-histo@1."""
    torch.manual_seed(0)
    registry = ModelRegistry()
    registry.register(create_model("test_resnet", 2), CARD)
    return registry


def test_list_prints_a_table_of_models(registered, capsys) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    header, rule, row = out.splitlines()[:3]
    assert header.split()[:3] == ["MODEL", "TASK", "MODALITY"] and set(rule) <= {"-", " "}
    assert "demo-histo@1" in row and "benign,malignant" in row and "roc_auc=0.875" in row


def test_list_on_an_empty_registry_says_how_to_get_a_model(capsys) -> None:
    assert main(["models", "list"]) == 0
    assert "pathreview demo" in capsys.readouterr().out


def test_list_architectures_names_the_seeds(capsys) -> None:
    assert main(["models", "list", "--architectures"]) == 0
    out = capsys.readouterr().out
    for name in ("cspresnet50_fpn_se", "hybrid_effnetv2s_vitb16", "ssresnext50", "hmc_resnet50"):
        assert name in out


def test_show_prints_the_card(registered, capsys) -> None:
    assert main(["models", "show", "demo-histo@1"]) == 0
    out = capsys.readouterr().out
    assert "architecture: test_resnet" in out and "weights_sha256:" in out


def test_show_unknown_model_exits_2_with_a_hint(capsys) -> None:
    assert main(["models", "show", "nope"]) == 2
    assert "pathreview train" in capsys.readouterr().err


def test_export_import_remove_cycle(registered, tmp_path: Path, capsys) -> None:
    archive = tmp_path / "demo.tar.gz"
    assert main(["models", "export", "demo-histo", str(archive)]) == 0
    assert archive.is_file()
    assert f"exported demo-histo@1 to {archive}" in capsys.readouterr().out  # not "@latest"
    assert main(["models", "import", str(archive)]) == 0  # the same model: not copied again
    assert "already registered as demo-histo@1" in capsys.readouterr().out
    assert registered.versions("demo-histo") == ["1"]
    assert main(["models", "remove", "demo-histo@1"]) == 0
    assert registered.names() == []
    assert main(["models", "import", str(archive)]) == 0
    assert "imported demo-histo@1" in capsys.readouterr().out
    assert main(["models", "remove", "demo-histo"]) == 0
    assert registered.names() == []


def test_export_to_a_zip_name_is_refused_instead_of_making_a_folder_so_named(
    registered, tmp_path: Path, capsys
) -> None:
    dest = tmp_path / "demo.zip"
    assert main(["models", "export", "demo-histo", str(dest)]) == 2
    assert not dest.exists()
    assert "demo.tar.gz" in capsys.readouterr().err


def test_export_to_an_existing_folder_named_as_an_archive_says_it_is_a_folder(
    registered, tmp_path: Path, capsys
) -> None:
    dest = tmp_path / "out.tar.gz"
    dest.mkdir()
    assert main(["models", "export", "demo-histo", str(dest)]) == 2
    err = capsys.readouterr().err
    assert f"{dest} is a folder; give a file name" in err
    assert ".partial" not in err  # not the hidden temporary file of the atomic write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar.gz"]  # nothing left behind


def test_export_onto_an_existing_archive_is_refused_naming_it_and_force(
    registered, tmp_path: Path, capsys
) -> None:
    archive = tmp_path / "demo.tar.gz"
    archive.write_bytes(b"someone else's export")
    assert main(["models", "export", "demo-histo", str(archive)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(archive) in err and "--force" in err
    assert "Traceback" not in err and "overwrite=True" not in err
    assert archive.read_bytes() == b"someone else's export"


def test_export_with_force_replaces_an_existing_archive(registered, tmp_path: Path, capsys) -> None:
    archive = tmp_path / "demo.tar.gz"
    archive.write_bytes(b"an old export")
    assert main(["models", "export", "demo-histo", str(archive), "--force"]) == 0
    assert main(["models", "import", str(archive)]) == 0  # the export replaced the old bytes
    assert "already registered as demo-histo@1" in capsys.readouterr().out


def test_python_export_onto_an_existing_archive_names_the_overwrite_argument(
    registered, tmp_path: Path
) -> None:
    archive = tmp_path / "demo.tar"
    archive.write_bytes(b"an old export")
    with pytest.raises(DestinationExistsError, match="overwrite=True") as error:
        registered.export("demo-histo", None, archive)
    assert "--force" not in str(error.value)
    assert registered.export("demo-histo", None, archive, overwrite=True) == archive


def test_import_of_a_pickle_exits_2_explaining_why(tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"\x80\x04pickled")
    assert main(["models", "import", str(checkpoint)]) == 2
    assert "pickle" in capsys.readouterr().err


def test_bad_reference_exits_2(capsys) -> None:
    assert main(["models", "remove", "../etc@1"]) == 2
    assert "invalid model name" in capsys.readouterr().err


def test_a_refused_export_leaves_no_folder_for_its_archive(registered, tmp_path: Path) -> None:
    """Damaged weights are found after the destination is checked: the check makes nothing."""
    (registered.folder("demo-histo") / "weights.safetensors").write_bytes(b"damaged")
    archive = tmp_path / "exports" / "demo-histo.tar.gz"
    assert main(["models", "export", "demo-histo", str(archive)]) == 2
    assert not (tmp_path / "exports").exists()


def test_a_refused_import_leaves_no_empty_registry_folder(tmp_path: Path, capsys) -> None:
    registry = tmp_path / "new-registry"
    missing = tmp_path / "missing.tar.gz"
    assert main(["models", "--registry", str(registry), "import", str(missing)]) == 2
    assert f"{missing} does not exist" in capsys.readouterr().err
    assert not registry.exists()


def test_listing_a_registry_folder_not_made_yet_says_it_is_empty(tmp_path: Path, capsys) -> None:
    registry = tmp_path / "new-registry"
    assert main(["models", "--registry", str(registry), "list"]) == 0
    assert "pathreview demo" in capsys.readouterr().out and not registry.exists()
