"""Where training images come from: folder trees, CSV manifests (review export), BreaKHis, MIAS.

Every source becomes a list of :class:`Sample` (path, label, patient); splitting, caching
and tensors are source-independent. Images are decoded once through ``io.load_image`` and
kept resized in memory, because re-decoding 700×460 PNGs every epoch dominates CPU runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.csv_table import read_csv_rows
from napari_pathreview.io.patients import check_one_patient, patient_or_file
from napari_pathreview.preprocessing import (
    PreprocessSpec,
    centre_offset,
    normalise,
    to_canvas,
)

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


def from_folder(root: Path) -> list[Sample]:
    """Class-per-sub-folder layout (``root/<class>/**/image``), as torchvision's ImageFolder."""
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in _images_under(class_dir):
            samples.append(Sample(str(path), class_dir.name, patient_or_file(path, root)))
    return samples


def split_group(sample: Sample, group_by: str) -> str:
    """What a split keeps in one part: the patient, or with ``group_by: patient_stem`` the
    numeric stem of a BreaKHis patient code (slides 14-22549AB and 14-22549CD may be one
    patient), whatever source named the patient: file name, manifest column or review."""
    if group_by != "patient_stem":
        return sample.patient_id
    from napari_pathreview.io.breakhis import patient_stem

    return patient_stem(sample.patient_id) or sample.patient_id


def from_csv(manifest: Path, label_column: str = "label") -> list[Sample]:
    """A CSV manifest: ``path`` (relative to the CSV's folder), a label column, optional patient_id,
    weight, roi_geojson, magnification, subtype. The review store's export is such a CSV."""
    if not manifest.is_file():
        raise DatasetError(f"manifest not found: {manifest}")
    _, rows = read_csv_rows(manifest, "manifest", DatasetError)
    if not rows:
        raise DatasetError(f"{manifest} has no rows")
    missing = {"path", label_column} - set(rows[0])
    if missing:
        raise DatasetError(f"{manifest} lacks column(s) {sorted(missing)}; has {sorted(rows[0])}")
    samples = []
    owners: dict[str, tuple[str, int]] = {}
    for number, row in enumerate(rows, start=2):
        label = (row.get(label_column) or "").strip()
        if not label:
            raise DatasetError(f"{manifest}:{number}: empty {label_column!r}")
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        patient = (row.get("patient_id") or "").strip() or patient_or_file(path, manifest.parent)
        check_one_patient(owners, path, patient, str(manifest), number, DatasetError)
        weight = _weight(row.get("weight"), manifest, number)
        keep = ("magnification", "subtype", "sha256", "roi_geojson", "roi_mask")
        extra = {k: v for k, v in row.items() if k in keep and v}
        samples.append(Sample(str(path), label, patient, weight, _geojson_rois(row), extra))
    return samples


def _weight(text: str | None, manifest: Path, number: int) -> float:
    """A row's sample weight: empty → 1.0; else a finite number >= 0 (a NaN or negative weight
    would silently corrupt the loss)."""
    import math

    if not (text or "").strip():
        return 1.0
    try:
        weight = float(text)
    except ValueError:
        raise DatasetError(f"{manifest}:{number}: weight {text!r} is not a number") from None
    if not math.isfinite(weight) or weight < 0:
        raise DatasetError(f"{manifest}:{number}: weight {text!r} must be a finite number >= 0")
    return weight


def _geojson_rois(row: dict) -> tuple:
    """ROI circles (row, col, radius): roi_row/roi_col/roi_radius columns (the demo mammogram set)
    or circles enclosing the GeoJSON polygons the review export writes."""
    if all((row.get(k) or "").strip() for k in ("roi_row", "roi_col", "roi_radius")):
        return ((float(row["roi_row"]), float(row["roi_col"]), float(row["roi_radius"])),)
    text = (row.get("roi_geojson") or "").strip()
    if not text:
        return ()
    from napari_pathreview.errors import ImageReadError
    from napari_pathreview.io.geojson import pixel_origin
    from napari_pathreview.io.pixel_origin import corner_to_centre

    try:
        document = json.loads(text)
        features, origin = document.get("features", []), pixel_origin(document)
    except (json.JSONDecodeError, AttributeError, ImageReadError):
        return ()
    rois = []
    for feature in features:
        coords = np.asarray(feature.get("geometry", {}).get("coordinates", [[]])[0], dtype=float)
        if coords.ndim == 2 and len(coords) >= 3:  # GeoJSON is (x, y) = (col, row)
            centre = corner_to_centre(coords.mean(axis=0), origin)  # napari's pixel centres
            radius = float(np.max(np.linalg.norm(coords - coords.mean(axis=0), axis=1)))
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
                extra={"magnification": info.magnification, "subtype": info.subtype},
            )
        )
    return samples


def from_mias(root: Path) -> list[Sample]:
    """mini-MIAS: images ``mdbNNN.(png|pgm)`` with ``labels.csv`` or ``Info.txt`` beside them.

    Label = normal / benign / malignant (malignant if any finding is); patient = woman
    (n + 1) // 2, since MIAS numbers a woman's two breasts consecutively. Circles are in each
    film's own pixels; a film of unknown pixel size is refused here (:func:`mias_film_circles`).
    """
    from napari_pathreview.io import mias_image_label, mias_refnum, read_mias_info
    from napari_pathreview.io.mias import mias_woman

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
        woman = str(mias_woman(refnum))
        rois = mias_film_circles(path, rows, table)
        samples.append(Sample(str(path), mias_image_label(rows), woman, rois=rois))
    return samples


def mias_film_circles(path: Path, rows: Sequence[Any], table: Path) -> tuple:
    """``path``'s Info.txt circles ((row, col, radius), ...) in its own pixels, placed by the
    viewer's rule (``io.mias.film_circle``: a 256² copy's are the 1024² film's ÷ 4) on the film
    as ``io.load_image`` reads it, whose pixel size must be known (``io._core.file_scale``).

    Raises:
        DatasetError: The film cannot be read, or states no pixel size and is not a (square)
            mini-MIAS film, so neither its size nor where its circles lie is known.
    """
    from napari_pathreview.errors import ImageReadError
    from napari_pathreview.io import load_image
    from napari_pathreview.io._core import level0_um_per_px
    from napari_pathreview.io.mias import film_circle

    try:
        film = load_image(path)
    except (ImageReadError, InvalidInputError) as error:
        raise DatasetError(f"{table} lists {path.name}, which cannot be read: {error}") from None
    shape = tuple(int(n) for n in film.levels[0].shape[:2])
    if level0_um_per_px(film) is None:
        raise DatasetError(
            f"{path}: a {shape[1]}×{shape[0]} px {film.modality} image that states no pixel "
            "size is not a mini-MIAS film (a grey square: 1024² at 0.2 mm, or a copy resized "
            f"whole), so neither its pixel size nor where {table.name}'s circles (pixels of the "
            "whole 1024² film) lie on it is known; use the whole film (resized square), save it "
            "with its pixel size (a DICOM or TIFF that states it), or remove it"
        )
    circles = (film_circle(a, shape) for a in rows if a.has_roi)
    return tuple((row, col, (r_rows + r_cols) / 2) for row, col, r_rows, r_cols in circles)


def from_reviews(db: str | None, workdir: Path, disagreement_weight: float) -> list[Sample]:
    """Export the review store (pathologists' labels, weighted) and read it as a manifest.

    The export is kept in the run folder, and a resumed run reads that copy: reviews saved
    since the run began would change its data under the folds it has already finished.
    """
    from napari_pathreview.review import ReviewStore

    manifest = workdir / "reviews_manifest.csv"
    if manifest.is_file():
        log.info("reading the reviews exported when this run began: %s", manifest)
        return from_csv(manifest)
    url = None
    if db:
        url = db if "://" in db else f"sqlite:///{Path(db).resolve()}"
    with ReviewStore(url, create=False) as store:  # a typo must not train on a new empty DB
        store.export_manifest(manifest, disagreement_weight=disagreement_weight)
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


@dataclass(frozen=True)
class PreparedImage:
    """An image decoded and fitted once to its canvas; ``rois`` mapped into the canvas.

    Attributes:
        pixels: uint8 canvas (S×S×3): the resize square of the preprocessing spec.
        rois: ((row, col, radius), ...) in canvas pixels.
        um_per_px: The source image's pixel size in µm (None when unknown).
        box_hw: Size of the part of the source laid on the canvas (all of it, or the breast).
        qc: The source image's QC verdict (:func:`sample_quality`'s) when preparation was
            asked for one, else None.
    """

    pixels: np.ndarray
    rois: tuple
    um_per_px: float | None = None
    box_hw: tuple[int, int] = (0, 0)
    qc: Any = None


def _as_spec(spec: PreprocessSpec | int, crop: str) -> PreprocessSpec:
    """A spec, or (for a bare side) the plain "stretch to size×size" one."""
    if isinstance(spec, PreprocessSpec):
        return spec
    return PreprocessSpec(input_size=(3, int(spec), int(spec)), crop=crop)


def prepare_image(
    sample: Sample, spec: PreprocessSpec | int, crop: str = "none", qc: Any = None
) -> PreparedImage:
    """Decode a sample and lay it on the spec's canvas (``preprocessing.to_canvas``).

    Decoding and fitting are the functions the Predictor uses, so evaluation and inference
    see the same pixels. With a spec that records ``pixel_size`` the image is resampled to
    it, which needs the image's own resolution (BreaKHis and MIAS names, or the file's).

    Args:
        sample: The image.
        spec: The preprocessing spec, or a side: stretch to side×side (with ``crop``).
        crop: Crop mode for a bare side.
        qc: A ``stain.QCConfig``: also judge the decoded image as :func:`sample_quality` does
            (``PreparedImage.qc``), without decoding it a second time.

    Raises:
        DatasetError: the spec wants a physical resolution the image does not state.
    """
    from napari_pathreview.inference.preprocess import decode, image_quality

    spec = _as_spec(spec, crop)
    decoded = decode(sample.path, min_side=min(spec.hw))
    if spec.pixel_size is not None and decoded.um_per_px is None:
        raise DatasetError(
            f"{sample.path}: its pixel size is unknown, but the recipe resamples to "
            f"data.pixel_size={spec.pixel_size} {spec.pixel_unit}; use files whose resolution "
            "is known (BreaKHis or MIAS names, DICOM PixelSpacing, slides that record it) or drop "
            "data.pixel_size"
        )
    canvas, placement = to_canvas(decoded.rgb, spec, decoded.um_per_px)
    box, (sh, sw), (oy, ox) = placement.box, placement.scaled, placement.offset
    sy, sx = sh / (box[1] - box[0]), sw / (box[3] - box[2])
    rois = tuple(_canvas_circle(roi, box, (sy, sx), (oy, ox)) for roi in sample.rois)
    box_hw = (box[1] - box[0], box[3] - box[2])
    verdict = image_quality(decoded, spec, qc) if qc is not None else None
    return PreparedImage(canvas, rois, decoded.um_per_px, box_hw, verdict)


def _canvas_circle(
    circle: tuple[float, float, float],
    box: tuple[int, int, int, int],
    scale: tuple[float, float],
    offset: tuple[int, int],
) -> tuple[float, float, float]:
    """A (row, col, radius) circle of the source image in canvas pixels: the centre of the
    pixel it is centred on lands on the centre of that pixel's place in the resized copy
    (``io.pixel_origin.resample_centres``), not at its coordinates times the scale."""
    from napari_pathreview.io.pixel_origin import resample_centres

    row, col, radius = circle
    centre = resample_centres([row - box[0], col - box[2]], np.asarray(scale)) + offset
    return float(centre[0]), float(centre[1]), float(radius * (scale[0] + scale[1]) / 2)


def prepare_all(
    samples: Sequence[Sample],
    spec: PreprocessSpec | int,
    crop: str = "none",
    progress: Callable[[int, int], None] | None = None,
    qc: Any = None,
) -> list[PreparedImage]:
    """Decode every sample once (the cache shared by all folds and epochs); with a
    ``stain.QCConfig`` as ``qc`` each is also judged by it (``PreparedImage.qc``)."""
    prepared = []
    for i, sample in enumerate(samples):
        prepared.append(prepare_image(sample, spec, crop, qc))
        if progress:
            progress(i + 1, len(samples))
    return prepared


def sample_quality(sample: Sample, spec: PreprocessSpec | int, config: Any = None) -> Any:
    """QC of a sample as prediction judges it (``inference.preprocess.image_quality``).

    ``Predictor.quality`` checks the image decoded for the model (the file as stored; a
    pyramid's smallest level covering the model's side), not its canvas: blur depends on scale
    (shrunk onto a 256-px canvas a blurry 700-px BreaKHis image looks sharp), and an image the
    model would enlarge more than 4× fails. Training judges the same image by the same rule, so
    it keeps and drops what prediction passes and flags; one image at a time, so memory holds
    one decoded image, never the whole set. :func:`prepare_all` with ``qc`` judges each image
    from the decode it makes anyway.
    """
    from napari_pathreview.inference.preprocess import decode, image_quality

    spec = _as_spec(spec, "none")
    return image_quality(decode(sample.path, min_side=min(spec.hw)), spec, config)


def qc_config(data: Any):
    """The ``stain.QCConfig`` a recipe's ``data.qc_*`` settings ask for (defaults elsewhere)."""
    from dataclasses import asdict

    from napari_pathreview.stain.qc_config import recipe_qc_config

    return recipe_qc_config(asdict(data))


class RandomRot90:
    """Rotate by a random multiple of 90° (histology has no canonical orientation)."""

    def __call__(self, x):
        import torch

        k = int(torch.randint(0, 4, (1,)).item())
        return torch.rot90(x, k, dims=(-2, -1)) if k else x


class CentreCrop:
    """The centre (H, W) of a C×S×S tensor, at the offsets the preprocessing spec uses."""

    def __init__(self, hw: tuple[int, int]):
        self.hw = (int(hw[0]), int(hw[1]))

    def __call__(self, x):
        top, left = centre_offset(x.shape[-2:], self.hw)
        return x[..., top : top + self.hw[0], left : left + self.hw[1]]


class Normalise:
    """uint8 C×H×W → the normalised float tensor, by ``preprocessing.normalise``."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec

    def __call__(self, x):
        return normalise(x[None], self.spec)[0]


def train_transform(augment, spec: PreprocessSpec):
    """Random augmentation for training (torchvision v2 on uint8 C×S×S), then the spec's
    normalisation."""
    from torchvision.transforms import v2

    hw = spec.hw
    steps = [v2.RandomCrop(hw) if augment.random_crop else CentreCrop(hw)]
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
    steps.append(Normalise(spec))
    return v2.Compose(steps)


def eval_transform(spec: PreprocessSpec):
    """The evaluation transform of a cached canvas: the spec's centre window, normalised.

    Exactly ``Predictor.prepare``'s steps after the canvas (both call ``preprocessing``).
    """
    from torchvision.transforms import v2

    return v2.Compose([CentreCrop(spec.hw), Normalise(spec)])


def build_transform(
    augment, image_size: int, mean: Sequence[float], std: Sequence[float], train: bool
):
    """``train_transform`` / ``eval_transform`` for a square RGB input of ``image_size``."""
    spec = PreprocessSpec(input_size=(3, image_size, image_size), mean=mean, std=std)
    return train_transform(augment, spec) if train else eval_transform(spec)


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
