"""The model registry: register, list, load, remove, export/import, integrity and concurrency."""

from __future__ import annotations

import multiprocessing
import tarfile
from pathlib import Path

import pytest
import torch

from napari_pathreview.errors import InvalidInputError, ModelNotFoundError, WeightsError
from napari_pathreview.models import create_model
from napari_pathreview.registry import ModelCard, ModelCardError, ModelRegistry, parse_model_ref

CARD = {
    "name": "tiny",
    "task": "binary",
    "classes": ["benign", "malignant"],
    "modality": "histology",
    "metrics": {"auc": 0.9},
}


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("test_resnet", 2).eval()


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(3))


def test_default_root_is_under_pathreview_home(isolated_home: Path) -> None:
    assert ModelRegistry().root == isolated_home / "models"


def test_versions_count_up_per_name(registry, tiny_model) -> None:
    assert registry.register(tiny_model, CARD) == "1"
    assert registry.register(tiny_model, CARD) == "2"
    assert registry.register(tiny_model, {**CARD, "name": "other"}) == "1"
    assert registry.versions("tiny") == ["1", "2"]


def test_register_writes_card_and_safetensors(registry, tiny_model) -> None:
    registry.register(tiny_model, CARD)
    folder = registry.root / "tiny" / "1"
    assert sorted(p.name for p in folder.iterdir()) == ["card.yaml", "weights.safetensors"]
    assert not any((registry.root / ".tmp").iterdir())  # staging cleaned up


@pytest.fixture
def umask_022():
    """The common umask, so 'readable by others' has one expected mode."""
    import os

    before = os.umask(0o022)
    yield
    os.umask(before)


def test_registered_and_exported_weights_are_as_readable_as_the_card(
    registry, tiny_model, tmp_path, umask_022
) -> None:
    """A colleague reading a shared registry or an exported folder needs the weights, not only
    the card (safetensors writes its files with mode 0600)."""
    registry.register(tiny_model, CARD)
    stored = registry.root / "tiny" / "1"
    exported = registry.export("tiny", None, tmp_path / "export")
    for folder in (stored, exported):
        for name in ("card.yaml", "weights.safetensors"):
            assert (folder / name).stat().st_mode & 0o777 == 0o644, folder / name


def test_register_then_load_gives_bit_identical_outputs(registry, tiny_model, batch) -> None:
    registry.register(tiny_model, CARD)
    loaded = registry.load("tiny")
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(tiny_model(batch), loaded(batch))
    assert loaded.card.ref == "tiny@1"


def test_card_defaults_come_from_the_architecture(registry, tiny_model) -> None:
    registry.register(tiny_model, CARD)
    card = registry.card("tiny")
    assert card.architecture == "test_resnet"
    assert card.input_size == tiny_model.spec.input_size
    assert card.mean == tiny_model.spec.mean and card.std == tiny_model.spec.std
    assert card.cam_target_layers == tiny_model.cam_target_layer_names()
    assert len(card.weights_sha256) == 64 and card.created_at


def test_a_partial_preprocess_spec_takes_the_models_mean_and_std_not_imagenets(
    registry, tiny_model
) -> None:
    assert tiny_model.spec.mean == (0.5, 0.5, 0.5)  # timm's test_resnet, unlike ImageNet's
    registry.register(tiny_model, {**CARD, "preprocess": {"pixel_size": 0.5, "pixel_unit": "um"}})
    card = registry.card("tiny")
    assert card.preprocess.mean == tiny_model.spec.mean and card.mean == tiny_model.spec.mean
    assert card.preprocess.std == tiny_model.spec.std
    assert card.preprocess.input_size == tiny_model.spec.input_size
    assert card.preprocess.um_per_px == 0.5


def test_register_accepts_a_model_card(registry, tiny_model) -> None:
    version = registry.register(
        tiny_model, ModelCard(**{**CARD, "architecture": "test_resnet", "threshold": 0.4})
    )
    assert registry.card("tiny", version).threshold == 0.4


def test_architecture_kwargs_rebuild_the_model(registry, batch) -> None:
    model = create_model("test_resnet", 2, drop_rate=0.25).eval()
    registry.register(model, CARD)
    assert registry.card("tiny").architecture_kwargs == {"drop_rate": 0.25}
    with torch.no_grad():
        assert torch.equal(model(batch), registry.load("tiny")(batch))


def test_class_count_must_match_the_model(registry, tiny_model) -> None:
    with pytest.raises(ModelCardError, match="3 classes"):
        registry.register(tiny_model, {**CARD, "task": "subtype", "classes": ["a", "b", "c"]})


def test_missing_required_field_is_named(registry, tiny_model) -> None:
    card = {k: v for k, v in CARD.items() if k != "task"}
    with pytest.raises(ModelCardError, match="'task'"):
        registry.register(tiny_model, card)


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", "a\\b", "a@1", "", ".hidden", "a b"])
def test_unsafe_names_are_refused(registry, tiny_model, name: str) -> None:
    with pytest.raises(InvalidInputError):
        registry.register(tiny_model, {**CARD, "name": name})
    assert not registry.root.exists()  # refused before anything is written, the folder too


def test_tampered_weights_are_refused(registry, tiny_model) -> None:
    registry.register(tiny_model, CARD)
    weights = registry.root / "tiny" / "1" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its card"):
        registry.load("tiny")


def test_pickle_in_place_of_weights_is_refused(registry, tiny_model) -> None:
    registry.register(tiny_model, CARD)
    folder = registry.root / "tiny" / "1"
    (folder / "weights.safetensors").rename(folder / "model.pth")
    with pytest.raises(WeightsError, match=r"model\.pth is a pickle.*pathreview models export"):
        registry.load("tiny")


def test_hand_edited_card_with_wrong_type_names_the_field(registry, tiny_model) -> None:
    registry.register(tiny_model, CARD)
    card_file = registry.root / "tiny" / "1" / "card.yaml"
    card_file.write_text(card_file.read_text().replace("task: binary", "task: 3"))
    with pytest.raises(ModelCardError, match="'task'"):
        registry.load("tiny")


def test_hand_edited_card_missing_a_field_names_it(registry, tiny_model) -> None:
    registry.register(tiny_model, CARD)
    card_file = registry.root / "tiny" / "1" / "card.yaml"
    lines = [line for line in card_file.read_text().splitlines() if not line.startswith("weights_")]
    card_file.write_text("\n".join(lines))
    with pytest.raises(ModelCardError, match="'weights_sha256'"):
        registry.card("tiny")


def test_list_summarises_every_version(registry, tiny_model) -> None:
    registry.register(tiny_model, CARD)
    registry.register(tiny_model, {**CARD, "name": "mammo", "modality": "mammogram"})
    rows = registry.list()
    assert [r.ref for r in rows] == ["mammo@1", "tiny@1"]
    assert rows[1].classes == ("benign", "malignant") and rows[1].metrics == {"auc": 0.9}
    assert rows[0].modality == "mammogram" and rows[0].task == "binary" and rows[0].created_at


def test_unknown_model_and_version_say_what_exists(registry, tiny_model) -> None:
    with pytest.raises(ModelNotFoundError, match="empty"):
        registry.load("nothing")
    registry.register(tiny_model, CARD)
    with pytest.raises(ModelNotFoundError, match="versions of tiny: 1"):
        registry.card("tiny", "7")


def test_remove_one_version_then_all(registry, tiny_model) -> None:
    for _ in range(3):
        registry.register(tiny_model, CARD)
    assert registry.remove("tiny", "2") == ["2"]
    assert registry.versions("tiny") == ["1", "3"]
    assert registry.register(tiny_model, CARD) == "4"  # numbers are never reused for newer models
    assert registry.remove("tiny") == ["1", "3", "4"]
    assert registry.names() == [] and not (registry.root / "tiny").exists()


def test_importing_one_archive_twice_lists_the_model_once(registry, tiny_model, tmp_path) -> None:
    registry.register(tiny_model, CARD)
    exported = registry.export("tiny", "1", tmp_path / "model.tar.gz")
    other = ModelRegistry(tmp_path / "elsewhere")
    assert other.import_model(exported) == ("tiny", "1")
    assert other.import_model(exported) == ("tiny", "1")
    assert other.versions("tiny") == ["1"]
    registry.register(tiny_model, {**CARD, "description": "retrained"})  # another card: a version
    assert other.import_model(registry.export("tiny", "2", tmp_path / "v2.tar.gz")) == ("tiny", "2")


@pytest.mark.parametrize("dest_name", ["exported", "model.tar", "model.tar.gz"])
def test_export_then_import_round_trips(registry, tiny_model, batch, tmp_path, dest_name) -> None:
    registry.register(tiny_model, CARD)
    exported = registry.export("tiny", "1", tmp_path / dest_name)
    other = ModelRegistry(tmp_path / "elsewhere")
    assert other.import_model(exported) == ("tiny", "1")
    with torch.no_grad():
        assert torch.equal(tiny_model(batch), other.load("tiny")(batch))
    assert other.card("tiny").weights_sha256 == registry.card("tiny").weights_sha256


def test_import_refuses_a_pickle_file(registry, tmp_path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"\x80\x04pickled")
    with pytest.raises(WeightsError, match=r"model\.ckpt is a pickle.*weights\.safetensors"):
        registry.import_model(checkpoint)


def test_import_refuses_archives_with_pickles_or_escaping_paths(registry, tmp_path) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(b"x")
    for member, error in [
        ("tiny-v1/weights.pth", WeightsError),
        ("../card.yaml", InvalidInputError),
    ]:
        archive = tmp_path / "bad.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(payload, arcname=member)
        with pytest.raises(error):
            registry.import_model(archive)
    assert registry.names() == []


def test_import_refuses_weights_that_fail_their_checksum(registry, tiny_model, tmp_path) -> None:
    registry.register(tiny_model, CARD)
    exported = registry.export("tiny", None, tmp_path / "exported")
    weights = exported / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(WeightsError, match="does not match"):
        ModelRegistry(tmp_path / "elsewhere").import_model(exported)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("demo", ("demo", None)), ("demo@3", ("demo", "3")), ("demo@latest", ("demo", None))],
)
def test_parse_model_ref(ref: str, expected: tuple) -> None:
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize("ref", ["", "demo@", "demo@x", "demo@0", "../x@1"])
def test_parse_model_ref_rejects_malformed_refs(ref: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_model_ref(ref)


def _register_many(root: str, count: int, barrier, results) -> None:
    torch.set_num_threads(1)
    model = create_model("test_resnet", 2)
    barrier.wait(timeout=120)  # both processes are ready: now they really race
    results.put([ModelRegistry(root).register(model, CARD) for _ in range(count)])


@pytest.mark.slow
def test_two_processes_registering_at_once_stay_consistent(tmp_path) -> None:
    root = str(tmp_path / "shared")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_register_many, args=(root, 4, barrier, results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    versions = sorted(int(v) for batch_ in got for v in batch_)
    assert versions == list(range(1, 9))
    registry = ModelRegistry(root)
    assert registry.versions("tiny") == [str(v) for v in range(1, 9)]
    for version in registry.versions("tiny"):
        registry.load("tiny", version)  # every entry complete and verified
    assert not any((registry.root / ".tmp").iterdir())


def test_only_factory_models_can_be_registered(registry) -> None:
    import timm

    with pytest.raises(ModelCardError, match="create_model"):
        registry.register(timm.create_model("test_resnet", num_classes=2), CARD)


def test_card_architecture_must_match_the_model(registry, tiny_model) -> None:
    with pytest.raises(ModelCardError, match="architecture"):
        registry.register(tiny_model, {**CARD, "architecture": "resnet18"})


def test_compiled_or_ema_wrappers_are_unwrapped(registry, tiny_model, batch) -> None:
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(tiny_model)
    registry.register(ema, CARD)
    with torch.no_grad():
        assert torch.equal(ema.module(batch), registry.load("tiny")(batch))
