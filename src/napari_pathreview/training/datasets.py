"""Where training images come from: folder trees, CSV manifests (review export), BreaKHis, MIAS.

Every source becomes a list of :class:`Sample` (path, label, patient); splitting, caching
and tensors are source-independent. Images are decoded once through ``io.load_image`` and
kept resized in memory, because re-decoding 700×460 PNGs every epoch dominates CPU runs.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pathreview.errors import InvalidInputError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".dcm")
MIAS_CLASSES = ("normal", "benign", "malignant")
BREAKHIS_SUBTYPES = ("A", "F", "PT", "TA", "DC", "LC", "MC", "PC")


class DatasetError(InvalidInputError):
    """The data the recipe points at is missing, empty or mislabelled."""


@dataclass(frozen=True)
class Sample:
    """One labelled image; ``patient_id`` drives patient-level splits."""

    path: str
    label: str
    patient_id: str
    weight: float = 1.0
    rois: tuple = ()  # ((row, col, radius), ...) on the stored image, for CAM IoU
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _fallback_patient(path: Path) -> str:
    """A file's patient when none is given: from BreaKHis or MIAS names, else the file itself."""
    from napari_pathreview.io import mias_refnum, parse_breakhis_name

    info = parse_breakhis_name(path.name)
    if info is not None:
        return info.patient_id
    refnum = mias_refnum(path)
    if refnum is not None:
        return str((int(refnum[3:]) + 1) // 2)
    return path.stem


def from_folder(root: Path) -> list[Sample]:
    """Class-per-sub-folder layout (``root/<class>/**/image``), as torchvision's ImageFolder."""
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in _images_under(class_dir):
            samples.append(Sample(str(path), class_dir.name, _fallback_patient(path)))
    return samples


def from_csv(manifest: Path, label_column: str = "label") -> list[Sample]:
    """A CSV manifest: ``path`` (relative to the CSV's folder), a label column, optional patient_id,
    weight, roi_geojson, magnification, subtype. The review store's export is such a CSV."""
    if not manifest.is_file():
        raise DatasetError(f"manifest not found: {manifest}")
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DatasetError(f"{manifest} has no rows")
    missing = {"path", label_column} - set(rows[0])
    if missing:
        raise DatasetError(f"{manifest} lacks column(s) {sorted(missing)}; has {sorted(rows[0])}")
    samples = []
    for number, row in enumerate(rows, start=2):
        label = (row.get(label_column) or "").strip()
        if not label:
            raise DatasetError(f"{manifest}:{number}: empty {label_column!r}")
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        patient = (row.get("patient_id") or "").strip() or _fallback_patient(path)
        weight = float(row["weight"]) if (row.get("weight") or "").strip() else 1.0
        extra = {k: v for k, v in row.items() if k in ("magnification", "subtype", "sha256") and v}
        samples.append(Sample(str(path), label, patient, weight, _geojson_rois(row), extra))
    return samples


def _geojson_rois(row: dict) -> tuple:
    """ROI circles (row, col, radius): roi_row/roi_col/roi_radius columns (the demo mammogram set)
    or circles enclosing the GeoJSON polygons the review export writes."""
    if all((row.get(k) or "").strip() for k in ("roi_row", "roi_col", "roi_radius")):
        return ((float(row["roi_row"]), float(row["roi_col"]), float(row["roi_radius"])),)
    text = (row.get("roi_geojson") or "").strip()
    if not text:
        return ()
    try:
        features = json.loads(text).get("features", [])
    except (json.JSONDecodeError, AttributeError):
        return ()
    rois = []
    for feature in features:
        coords = np.asarray(feature.get("geometry", {}).get("coordinates", [[]])[0], dtype=float)
        if coords.ndim == 2 and len(coords) >= 3:  # GeoJSON is (x, y) = (col, row)
            centre = coords.mean(axis=0)
            radius = float(np.max(np.linalg.norm(coords - centre, axis=1)))
            rois.append((float(centre[1]), float(centre[0]), radius))
    return tuple(rois)


def from_breakhis(root: Path, task: str, magnification: int | None = None) -> list[Sample]:
    """BreaKHis file names under ``root`` → binary (benign/malignant) or subtype labels."""
    from napari_pathreview.io import parse_breakhis_name

    if not root.is_dir():
        raise DatasetError(f"BreaKHis folder not found: {root}")
    samples = []
    for path in _images_under(root):
        info = parse_breakhis_name(path.name)
        if info is None or (magnification and info.magnification != magnification):
            continue
        label = info.subtype if task == "subtype" else info.binary_label
        samples.append(
            Sample(
                str(path),
                label,
                info.patient_id,
                extra={
                    "magnification": info.magnification,
                    "subtype": info.subtype,
                    "patient_stem": info.patient_stem,
                },
            )
        )
    return samples


def from_mias(root: Path) -> list[Sample]:
    """mini-MIAS: images ``mdbNNN.(png|pgm)`` with ``labels.csv`` or ``Info.txt`` beside them.

    Label = normal / benign / malignant (malignant if any finding is); patient = woman
    (n + 1) // 2, since MIAS numbers a woman's two breasts consecutively.
    """
    from napari_pathreview.io import mias_image_label, mias_refnum, read_mias_info

    names = ("labels.csv", "Info.txt", "info.txt")
    table = next((root / n for n in names if (root / n).is_file()), None)
    if table is None:
        raise DatasetError(f"{root} holds no MIAS labels.csv or Info.txt")
    by_ref: dict[str, list] = {}
    for annotation in read_mias_info(table):
        by_ref.setdefault(annotation.refnum, []).append(annotation)
    samples = []
    for path in _images_under(root):
        refnum = mias_refnum(path)
        if refnum is None or refnum not in by_ref:
            continue
        rows = by_ref[refnum]
        rois = tuple((float(a.row), float(a.col), float(a.radius)) for a in rows if a.has_roi)
        woman = (int(refnum[3:]) + 1) // 2
        samples.append(Sample(str(path), mias_image_label(rows), str(woman), rois=rois))
    return samples


def from_reviews(db: str | None, workdir: Path, disagreement_weight: float) -> list[Sample]:
    """Export the review store (pathologists' labels, weighted) and read it as a manifest."""
    from napari_pathreview.review import ReviewStore

    url = None
    if db:
        url = db if "://" in db else f"sqlite:///{Path(db).resolve()}"
    manifest = workdir / "reviews_manifest.csv"
    ReviewStore(url).export_manifest(manifest, disagreement_weight=disagreement_weight)
    samples = from_csv(manifest)
    if not samples:
        raise DatasetError("the review store holds no reviews to train on")
    return samples


def class_names(samples: Sequence[Sample], task: str) -> tuple[str, ...]:
    """Class order: canonical where one exists (binary: benign, malignant = positive last)."""
    present = {s.label for s in samples}
    if task == "mammogram" and present <= set(MIAS_CLASSES):
        return MIAS_CLASSES
    if task == "subtype" and present <= set(BREAKHIS_SUBTYPES):
        return tuple(c for c in BREAKHIS_SUBTYPES if c in present)
    if present == {"benign", "malignant"}:
        return ("benign", "malignant")
    return tuple(sorted(present))


def stratified_subset(samples: list[Sample], size: int | None, seed: int) -> list[Sample]:
    """At most ``size`` samples, keeping class proportions (for shrunken smoke runs)."""
    if not size or size >= len(samples):
        return samples
    from sklearn.model_selection import train_test_split

    labels = [s.label for s in samples]
    counts = {label: labels.count(label) for label in labels}
    stratify = labels if min(counts.values()) >= 2 and size >= len(counts) else None
    keep, _ = train_test_split(samples, train_size=size, random_state=seed, stratify=stratify)
    return sorted(keep, key=lambda s: s.path)


def data_fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 over the sorted (file name, label) pairs: identifies the training set in the card."""
    import hashlib

    digest = hashlib.sha256()
    for name, label in sorted((Path(s.path).name, s.label) for s in samples):
        digest.update(f"{name}\t{label}\n".encode())
    return digest.hexdigest()


def breast_box(gray: np.ndarray, threshold: int = 20) -> tuple[int, int, int, int]:
    """Box (r0, r1, c0, c1) of the largest bright component: the breast, not film labels."""
    from skimage.measure import label, regionprops

    regions = regionprops(label(gray > threshold))
    if not regions:
        return 0, gray.shape[0], 0, gray.shape[1]
    r0, c0, r1, c1 = max(regions, key=lambda r: r.area).bbox
    return r0, r1, c0, c1


@dataclass(frozen=True)
class PreparedImage:
    """An image decoded, cropped and resized once; ``rois`` mapped into its pixel frame."""

    pixels: np.ndarray  # uint8 S×S×3
    rois: tuple


def prepare_image(sample: Sample, size: int, crop: str = "none") -> PreparedImage:
    """Decode via io.load_image, optionally crop to the breast, resize to size×size (area)."""
    import cv2

    from napari_pathreview.io import load_image, to_rgb_uint8

    loaded = load_image(sample.path)
    rgb = to_rgb_uint8(np.asarray(loaded.levels[-1] if len(loaded.levels) > 1 else loaded.data))
    r0, c0 = 0, 0
    if crop == "breast":
        r0, r1, c0, c1 = breast_box(rgb[..., 0])
        rgb = rgb[r0:r1, c0:c1]
    height, width = rgb.shape[:2]
    pixels = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    sy, sx = size / height, size / width
    rois = tuple(((r - r0) * sy, (c - c0) * sx, rad * (sx + sy) / 2) for r, c, rad in sample.rois)
    return PreparedImage(np.ascontiguousarray(pixels), rois)


def prepare_all(
    samples: Sequence[Sample],
    size: int,
    crop: str = "none",
    progress: Callable[[int, int], None] | None = None,
) -> list[PreparedImage]:
    """Decode every sample once (the cache shared by all folds and epochs)."""
    prepared = []
    for i, sample in enumerate(samples):
        prepared.append(prepare_image(sample, size, crop))
        if progress:
            progress(i + 1, len(samples))
    return prepared


class RandomRot90:
    """Rotate by a random multiple of 90° (histology has no canonical orientation)."""

    def __call__(self, x):
        import torch

        k = int(torch.randint(0, 4, (1,)).item())
        return torch.rot90(x, k, dims=(-2, -1)) if k else x


def build_transform(
    augment, image_size: int, mean: Sequence[float], std: Sequence[float], train: bool
):
    """torchvision v2 pipeline on uint8 C×H×W tensors; evaluation uses a centre crop only.

    Args:
        augment: an ``AugmentConfig`` (ignored when ``train`` is False).
        image_size: side of the crop the model sees.
        mean: per-channel mean of the model's spec.
        std: per-channel std of the model's spec.
        train: random augmentation for training, deterministic for evaluation.
    """
    import torch
    from torchvision.transforms import v2

    steps = []
    if train:
        crop = v2.RandomCrop if augment.random_crop else v2.CenterCrop
        steps.append(crop(image_size))
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if augment.vflip:
            steps.append(v2.RandomVerticalFlip())
        if augment.rot90:
            steps.append(RandomRot90())
        if augment.rotate:
            steps.append(v2.RandomRotation(augment.rotate))
        if augment.color_jitter:
            j = augment.color_jitter
            steps.append(v2.ColorJitter(j, j, j, min(j, 0.5) / 5))
    else:
        steps.append(v2.CenterCrop(image_size))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class ImageDataset:
    """Map-style torch dataset over prepared images: (tensor, class index, sample weight)."""

    def __init__(
        self,
        images: Sequence[PreparedImage],
        labels: Sequence[int],
        weights: Sequence[float] | None = None,
        transform=None,
    ):
        self.images = list(images)
        self.labels = [int(v) for v in labels]
        self.weights = [float(w) for w in (weights if weights is not None else [1.0] * len(labels))]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        import torch

        tensor = torch.from_numpy(self.images[index].pixels).permute(2, 0, 1).contiguous()
        if self.transform is not None:
            tensor = self.transform(tensor)
        return tensor, self.labels[index], self.weights[index]
