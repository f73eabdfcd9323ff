"""Reading the CSV files users hand over (manifests, patient lists, queue lists): one way.

Spreadsheet programs save "CSV UTF-8" with a byte-order mark, and older ones in a legacy
encoding; both must read the same everywhere, so every such CSV is read here.
"""

from __future__ import annotations

import csv
from pathlib import Path

from napari_pathreview.errors import InvalidInputError


def read_csv_rows(
    path: Path, what: str = "CSV", error: type[InvalidInputError] = InvalidInputError
) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of the UTF-8 CSV ``path`` (a leading byte-order mark is ignored).

    Args:
        path: The file.
        what: What the file is, for the message (``"patients CSV"``, say).
        error: The caller's own kind of InvalidInputError to raise.

    Raises:
        InvalidInputError: (``error``) naming ``path``: unreadable, not UTF-8 text, or not CSV.
    """
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except UnicodeDecodeError as problem:
        raise error(
            f"{what} {path} is not UTF-8 text ({problem.reason} at byte {problem.start}); "
            "save it as CSV UTF-8"
        ) from None
    except csv.Error as problem:
        raise error(f"{what} {path} is not a readable CSV ({problem})") from None
    except OSError as problem:
        raise error(f"cannot read {what} {path}: {problem.strerror or problem}") from None
