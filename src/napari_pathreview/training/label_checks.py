"""Refuse a training set whose labels do not match the recipe's task, or whose images are of
the other modality, before any decoding.

A typo (``cat``) or a second spelling (``Malignant`` beside ``malignant``) would otherwise
become an extra class: the model trains, the card says "binary" with three classes, and
every figure is wrong without a word. Messages name the labels and the rows (or files).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from napari_pathreview.errors import InvalidInputError

BINARY_CLASSES = ("benign", "malignant")
MIAS_CLASSES = ("normal", "benign", "malignant")
BREAKHIS_SUBTYPES = ("A", "F", "PT", "TA", "DC", "LC", "MC", "PC")
#: Tasks whose class names are fixed; any other task name takes the labels as they come.
TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "binary": BINARY_CLASSES,
    "subtype": BREAKHIS_SUBTYPES,
    "mammogram": MIAS_CLASSES,
}
_SHOWN = 5


class LabelError(InvalidInputError):
    """The manifest's labels do not fit the recipe's task (names the labels and rows)."""


def _where(samples: Sequence[Any], indices: list[int], first_row: int | None) -> str:
    """``rows 2, 7`` of a CSV manifest, else the first few file paths."""
    shown = indices[:_SHOWN]
    more = f" (+{len(indices) - _SHOWN} more)" if len(indices) > _SHOWN else ""
    if first_row is not None:
        return "rows " + ", ".join(str(first_row + i) for i in shown) + more
    return "files " + ", ".join(str(samples[i].path) for i in shown) + more


def check_labels(
    samples: Sequence[Any], task: str, source: str, first_row: int | None = None
) -> None:
    """Check ``samples``' labels against ``task``.

    Args:
        samples: Objects with ``label`` and ``path``.
        task: The recipe's ``data.task``.
        source: What the samples came from (a manifest path), for the message.
        first_row: CSV line number of the first sample (2 after a header), when from a CSV.

    Raises:
        LabelError: Two spellings of one label; a label outside a fixed task's classes; a
            binary task without exactly two labels.
    """
    rows: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        rows[sample.label].append(i)
    _check_spellings(samples, rows, source, first_row)
    fixed = TASK_CLASSES.get(task)
    if fixed is None:
        return
    canonical = {c.casefold() for c in fixed}
    if task == "binary" and not any(label.casefold() in canonical for label in rows):
        if len(rows) != 2:
            raise LabelError(
                f"{source}: task 'binary' needs exactly 2 labels, found {len(rows)}: "
                f"{', '.join(sorted(rows))}"
            )
        return  # a free two-class problem (e.g. 'dark'/'light')
    unknown = sorted(label for label in rows if label not in fixed)
    if unknown:
        details = "; ".join(
            f"{label!r} at {_where(samples, rows[label], first_row)}" for label in unknown
        )
        raise LabelError(
            f"{source}: label(s) {', '.join(map(repr, unknown))} are not classes of task "
            f"{task!r} ({', '.join(fixed)}): {details}. Fix the labels, or set data.task to "
            "a free task name to train on the labels as they are"
        )


def _check_spellings(
    samples: Sequence[Any], rows: dict[str, list[int]], source: str, first_row: int | None
) -> None:
    spellings: dict[str, list[str]] = defaultdict(list)
    for label in rows:
        spellings[label.strip().casefold()].append(label)
    clashes = [sorted(group) for group in spellings.values() if len(group) > 1]
    if clashes:
        details = "; ".join(
            " vs ".join(f"{label!r} ({_where(samples, rows[label], first_row)})" for label in group)
            for group in clashes
        )
        raise LabelError(
            f"{source}: one label spelt more than one way would train as separate classes: "
            f"{details}. Use one spelling"
        )


def check_modality(samples: Sequence[Any], modality: str, source: str) -> None:
    """Refuse images of the other modality than the recipe's, from their headers alone.

    A mammogram in a histology manifest (or the reverse) is resampled from its mm to the
    recipe's µm: a MIAS film at 0.5 µm/px asked for a 500 GB canvas. Files whose header
    cannot tell are left to the reader.

    Raises:
        ModalityMismatchError: Naming the files and what to change.
    """
    from napari_pathreview.inference.analysis import ModalityMismatchError
    from napari_pathreview.preflight import probe_modality

    found = [(i, probe_modality(s.path)) for i, s in enumerate(samples)]
    wrong = [i for i, m in found if m not in (None, modality)]
    if wrong:
        other = found[wrong[0]][1]
        files = _where(samples, wrong, None).removeprefix("files ")
        plural = len(wrong) > 1
        raise ModalityMismatchError(
            f"{source}: {files} {'are' if plural else 'is a'} {other} image{'s' if plural else ''}"
            f" but the recipe's modality is {modality}; remove "
            f"{'them' if plural else 'it'} from the data, or set modality: {other}"
        )
