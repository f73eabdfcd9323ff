"""A mammogram read against the same woman's other film, with the registered model's calibration.

The model reads one film; what a film shares with the other breast's (density, exposure,
processing) is not a lesion. A card that carries ``bilateral`` (a lesion-aware mammogram run
with ``lesion.bilateral: true``) turns the pair of one-film predictions into the two-film
decision its training run reported (``napari_pathreview.bilateral``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathreview.bilateral import (
    bilateral_probs,
    pair_films,
    read_card_entry,
)
from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.csv_table import read_csv_rows
from napari_pathreview.io.patients import FilmSide, check_one_patient


@dataclass(frozen=True)
class TwoFilmDecision:
    """One film decided against the woman's other film.

    Attributes:
        other: The other film (its path or layer name).
        probabilities: Class name → probability of the two-film decision.
        label: The most probable class.
    """

    other: str
    probabilities: dict[str, float]
    label: str


def check_two_film_model(card) -> None:
    """Refuse, naming the model, a card without a two-film calibration (before any work)."""
    if getattr(card, "bilateral", None) is None:
        raise InvalidInputError(
            f"model {card.ref} has no two-film calibration: train it with a lesion-aware "
            "mammogram recipe and lesion.bilateral: true to read a film against the other film"
        )


def decide_pair(
    card, film: Mapping[str, float], other: Mapping[str, float], other_name: str
) -> TwoFilmDecision:
    """The two-film decision of ``film`` given the woman's ``other`` film (one-film class
    probabilities of each, as the model's ``Prediction.probabilities``)."""
    return decide_films(card, [film, other], ["woman", "woman"], ["film", other_name])[0]


def decide_films(
    card,
    probabilities: Sequence[Mapping[str, float] | None],
    patients: Sequence[str | None],
    names: Sequence[str],
    sides: Sequence[FilmSide] | None = None,
    films: Sequence[str] | None = None,
) -> list[TwoFilmDecision | None]:
    """Each film's two-film decision, in input order.

    A film gets one when :func:`pair_films` pairs it (None probabilities: a film that failed;
    None patient: unknown; ``sides``: each film's breast and view, unknown when omitted;
    ``films``: each row's image, so an image listed twice is never read against itself).
    Any other film gets None: it stands alone.
    """
    check_two_film_model(card)
    calibration, negative = read_card_entry(card.bilateral, card.classes)
    sides = list(sides) if sides is not None else [FilmSide()] * len(probabilities)
    usable = [i for i, p in enumerate(probabilities) if p is not None]
    out: list[TwoFilmDecision | None] = [None] * len(probabilities)
    women, film_sides = [patients[i] for i in usable], [sides[i] for i in usable]
    images = None if films is None else [films[i] for i in usable]
    partners, _ = pair_films(women, film_sides, images)
    if not partners:
        return out
    probs = np.asarray([[probabilities[i][c] for c in card.classes] for i in usable], float)
    decided = bilateral_probs(probs, women, negative, calibration, film_sides, images)
    for row, partner in partners.items():
        values = {c: float(v) for c, v in zip(card.classes, decided[row], strict=True)}
        out[usable[row]] = TwoFilmDecision(
            names[usable[partner]], values, max(values, key=values.get)
        )
    return out


def why_alone(
    probabilities: Sequence[Mapping[str, float] | None],
    patients: Sequence[str | None],
    sides: Sequence[FilmSide],
    films: Sequence[str] | None = None,
) -> dict[int, str]:
    """Input index → why that film gets no two-film decision (as :func:`decide_films`)."""
    failed = {i: "its prediction failed" for i, p in enumerate(probabilities) if p is None}
    usable = [i for i in range(len(probabilities)) if i not in failed]
    images = None if films is None else [films[i] for i in usable]
    _, alone = pair_films([patients[i] for i in usable], [sides[i] for i in usable], images)
    return {**failed, **{usable[row]: why for row, why in alone.items()}}


def read_patients_csv(path: Path) -> dict[Path, str]:
    """A ``path,patient_id`` CSV (paths relative to its folder, as in training manifests) as
    resolved path → patient; a missing column, an empty cell or an image listed under two
    patients is refused naming the row."""
    path = Path(path)
    header, rows = read_csv_rows(path, "patients CSV")
    missing = [c for c in ("path", "patient_id") if c not in header]
    if missing:
        raise InvalidInputError(f"patients CSV {path} needs the columns path,patient_id")
    patients: dict[Path, str] = {}
    owners: dict[str, tuple[str, int]] = {}
    for line, row in enumerate(rows, start=2):
        image, patient = (row.get("path") or "").strip(), (row.get("patient_id") or "").strip()
        if not image or not patient:
            raise InvalidInputError(f"patients CSV {path}, line {line}: empty path or patient_id")
        resolved = (path.parent / image).resolve()
        check_one_patient(owners, resolved, patient, f"patients CSV {path}", line)
        patients[resolved] = patient
    return patients


def patients_of(
    images: Sequence[Path], listed: Mapping[Path, str] | None, source: Path | None = None
) -> list[str | None]:
    """Each image's patient: from the CSV when one is given (an image it omits is refused,
    naming it and the CSV ``source``: pairing must not guess), else from what the file says
    (``io.patient_of_file``): None for a file that says nothing, which then stands alone (the
    training sources' file-name fallback, ``io.patients.patient_or_file``, never pairs)."""
    from napari_pathreview.io.patients import patient_of_file

    if listed is None:
        return [patient_of_file(image) for image in images]
    absent = [str(image) for image in images if Path(image).resolve() not in listed]
    if absent:
        named = f"the patients CSV {source}" if source is not None else "the patients CSV"
        hint = (
            f"; its paths are read relative to its own folder, {Path(source).parent.resolve()}"
            if source is not None
            else ""
        )
        raise InvalidInputError(f"{named} lists no patient_id for {', '.join(absent)}{hint}")
    return [listed[Path(image).resolve()] for image in images]
