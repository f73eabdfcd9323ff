"""Pretrained weights: local safetensors (argument or environment), pickles refused, offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from napari_pathreview.errors import ModelNotFoundError, WeightsError
from napari_pathreview.models import (
    PRETRAINED_DIR_ENV,
    create_model,
    list_architectures,
    pretrained_backbones,
    require_pretrained,
)


@pytest.fixture
def resnet18_source(tmp_path: Path) -> tuple[Path, dict]:
    """A freshly built (random) ImageNet-shaped resnet18 saved as <dir>/resnet18.safetensors."""
    torch.manual_seed(1)
    state = {k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}
    folder = tmp_path / "weights"
    folder.mkdir()
    save_file(state, str(folder / "resnet18.safetensors"))
    return folder, state


def assert_backbone_loaded(model: torch.nn.Module, state: dict) -> None:
    own = model.model.state_dict()
    backbone = [k for k in state if not k.startswith("fc.")]
    assert backbone and all(torch.equal(own[k], state[k]) for k in backbone)
    assert own["fc.weight"].shape == (2, 512)  # ImageNet's 1000-way head is not forced on us


def test_pretrained_path_folder_loads_the_backbone(resnet18_source) -> None:
    folder, state = resnet18_source
    assert_backbone_loaded(create_model("resnet18", 2, pretrained_path=folder), state)


def test_pretrained_path_file_loads_the_backbone(resnet18_source) -> None:
    folder, state = resnet18_source
    model = create_model("resnet18", 2, pretrained_path=folder / "resnet18.safetensors")
    assert_backbone_loaded(model, state)


def test_environment_folder_serves_pretrained_true(resnet18_source, monkeypatch) -> None:
    folder, state = resnet18_source
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))
    assert_backbone_loaded(create_model("resnet18", 2, pretrained=True), state)


def test_without_pretrained_the_weights_are_not_the_files(resnet18_source) -> None:
    _, state = resnet18_source
    own = create_model("resnet18", 2).model.state_dict()
    assert not torch.equal(own["conv1.weight"], state["conv1.weight"])


def test_offline_without_a_file_names_both_ways(offline_hub) -> None:
    with pytest.raises(WeightsError) as caught:
        create_model("resnet18", 2, pretrained=True)
    message = str(caught.value)
    assert "pretrained_path" in message and PRETRAINED_DIR_ENV in message


def test_missing_weights_name_the_places_looked_in_and_the_fixes(offline_hub) -> None:
    with pytest.raises(WeightsError) as caught:
        require_pretrained("resnet18")
    message = str(caught.value)
    assert f"${PRETRAINED_DIR_ENV} (not set)" in message
    assert str(offline_hub) in message and "timm/resnet18.a1_in1k" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "pathreview models convert-weights FILE --arch resnet18" in message
    assert "pretrained=False" in message


def test_a_folder_without_the_file_is_named_with_the_names_it_may_have(
    offline_hub, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    with pytest.raises(WeightsError) as caught:
        require_pretrained("resnet18")
    assert f"{PRETRAINED_DIR_ENV}={tmp_path} (none of resnet18.safetensors" in str(caught.value)


def test_a_local_safetensors_file_passes_the_check_with_the_hub_offline(
    resnet18_source, offline_hub, monkeypatch
) -> None:
    folder, _ = resnet18_source
    require_pretrained("resnet18", pretrained_path=folder)
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))
    require_pretrained("resnet18")


def test_a_file_in_the_hugging_face_cache_counts_and_is_what_loads(
    resnet18_source, offline_hub
) -> None:
    """As huggingface_hub lays out a download of timm/resnet18.a1_in1k."""
    folder, state = resnet18_source
    repo = offline_hub / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    shutil.copy(
        folder / "resnet18.safetensors", repo / "snapshots" / "0123abcd" / "model.safetensors"
    )
    require_pretrained("resnet18")
    assert_backbone_loaded(create_model("resnet18", 2, pretrained=True), state)


def test_a_two_backbone_model_names_every_backbone_it_lacks(offline_hub) -> None:
    with pytest.raises(WeightsError) as caught:
        create_model("hybrid_effnetv2s_vitb16", 2, pretrained=True)
    assert "needs pretrained weights for tf_efficientnetv2_s, vit_base_patch16_224" in str(
        caught.value
    )


def test_the_mil_encoder_is_the_backbone_looked_up() -> None:
    assert pretrained_backbones("patch_mil", encoder="test_resnet") == ("test_resnet",)
    assert pretrained_backbones("cspresnet50_fpn_se", backbone="cspresnet18") == ("cspresnet18",)


@pytest.mark.parametrize("name", list_architectures())
def test_every_architecture_names_backbones_timm_has_weights_for(name: str) -> None:
    backbones = pretrained_backbones(name)
    assert backbones
    assert all(timm.models.get_pretrained_cfg(b).hf_hub_id for b in backbones)


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".ckpt"])
def test_pickle_weight_files_are_refused(tmp_path: Path, suffix: str) -> None:
    pickle = tmp_path / f"resnet18{suffix}"
    pickle.write_bytes(b"\x80\x04not really loaded")
    with pytest.raises(WeightsError, match="pickle"):
        create_model("resnet18", 2, pretrained_path=pickle)
    with pytest.raises(WeightsError, match="pickle"):  # found in a folder, too
        create_model("resnet18", 2, pretrained_path=tmp_path)


def test_the_refusal_of_a_pickle_gives_the_command_that_makes_it_loadable(tmp_path: Path) -> None:
    torch.manual_seed(2)
    state = timm.create_model("resnet18").state_dict()
    pickle = tmp_path / "resnet18_imagenet.pth"
    torch.save({"state_dict": state}, pickle)  # how training code bases usually save
    with pytest.raises(WeightsError) as caught:
        create_model("resnet18", 2, pretrained_path=pickle)
    command = str(caught.value).split("`")[1]
    assert command.startswith("pathreview models convert-weights") and str(pickle) in command

    folder = tmp_path / "converted"
    args = command.replace("FOLDER", str(folder)).split()[1:]
    exe = shutil.which("pathreview", path=str(Path(sys.executable).parent)) or "pathreview"
    done = subprocess.run([exe, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_backbone_loaded(create_model("resnet18", 2, pretrained_path=folder), state)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    state = {k: v.contiguous() for k, v in timm.create_model("resnet34").state_dict().items()}
    save_file(state, str(tmp_path / "resnet18.safetensors"))
    with pytest.raises(WeightsError, match="does not fit"):
        create_model("resnet18", 2, pretrained_path=tmp_path)


def test_folder_without_the_file_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="resnet18.safetensors"):
        create_model("resnet18", 2, pretrained_path=tmp_path)


def test_corrupt_safetensors_is_a_weights_error(tmp_path: Path) -> None:
    (tmp_path / "resnet18.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        create_model("resnet18", 2, pretrained_path=tmp_path)


def test_unknown_architecture_suggests_close_names() -> None:
    with pytest.raises(ModelNotFoundError, match="resnet18"):
        create_model("resnet_18", 2)


@pytest.mark.slow
def test_ssresnext_starts_from_seresnext_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)
    state = {
        k: v.contiguous() for k, v in timm.create_model("seresnext50_32x4d").state_dict().items()
    }
    save_file(state, str(tmp_path / "seresnext50_32x4d.safetensors"))
    model = create_model("ssresnext50", 8, pretrained_path=tmp_path).model
    own = model.state_dict()
    assert torch.equal(own["layer3.2.conv2.weight"], state["layer3.2.conv2.weight"])
    assert torch.equal(own["layer1.0.se.fc1.weight"], state["layer1.0.se.fc1.weight"])
    assert own["layer3.2.conv2_h.weight"].abs().sum() == 0  # new kernels start neutral


def test_the_weight_source_is_read_from_the_config_where_timm_lacks_its_private_rule(monkeypatch):
    import timm.models._builder as builder

    from napari_pathreview.models.pretrained import _pretrained_source

    cfg = {"hf_hub_id": "timm/resnet18.a1_in1k", "url": "https://x/r.pth"}
    assert _pretrained_source(cfg) == ("hf-hub", "timm/resnet18.a1_in1k")  # timm's own rule
    monkeypatch.delattr(builder, "_resolve_pretrained_source")
    assert _pretrained_source(cfg) == ("hf-hub", "timm/resnet18.a1_in1k")
    assert _pretrained_source({**cfg, "hf_hub_filename": "w.bin"}) == (
        "hf-hub",
        ("timm/resnet18.a1_in1k", "w.bin"),
    )
    assert _pretrained_source({"url": "https://x/r.pth"}) == ("url", "https://x/r.pth")
