"""The pixel size a dataset documents for a file named like its images, when the file states none.

BreaKHis patches are captured 700×460 at their magnification's µm/px (Spanhol et al. 2016) and
mini-MIAS films 1024² at 200 µm/px (Suckling et al. 1994). A copy resized whole (the demo's
350×230 patches, 256² films) still shows the same tissue, so its pixels are larger in
proportion: the documented size is scaled to the width the file holds. This is the one rule
the reader (the layer's scale), ``predict`` and the Analyze dock (which reads the layer's)
share; a size the file states wins over it (``io._core.file_scale``).
"""

from __future__ import annotations

from pathlib import Path

from napari_pathreview.io.breakhis import parse_breakhis_name
from napari_pathreview.io.mias import MIAS_MM_PER_PX, MIAS_SIZE, mias_refnum
from napari_pathreview.modality import HISTOLOGY, MAMMOGRAM

BREAKHIS_SHAPE: tuple[int, int] = (460, 700)
"""BreaKHis patches are captured 700 px wide (460 rows); their µm/px holds at that width."""

PROPORTION_TOLERANCE = 0.02
"""How far a copy's rows may stray from the capture's proportions (rounding, a 700×456 patch)."""


def named_um_per_px(path: str | Path, shape: tuple[int, ...], modality: str) -> float | None:
    """The pixel size (µm) its name documents for a file decoded at ``shape``, or None.

    A copy resized whole keeps the capture's proportions (BreaKHis 700×460, a mini-MIAS film
    square); an image that does not (a crop, another picture under such a name) has no
    documented size, and none is guessed.

    Args:
        path: The file; only its name is read (``SOB_…-40-…``, ``mdbNNN…``).
        shape: Its (rows, cols, …) as decoded.
        modality: The reader's modality: a BreaKHis name sizes histology, a mini-MIAS name a
            grey film (a colour image named ``mdb…`` is not a film).
    """
    name = Path(str(path)).name
    rows, cols = int(shape[0]), int(shape[1])
    info = parse_breakhis_name(name)
    if info is not None and modality == HISTOLOGY:
        capture, size = BREAKHIS_SHAPE, info.um_per_px
    elif mias_refnum(name) is not None and modality == MAMMOGRAM:
        capture, size = (MIAS_SIZE, MIAS_SIZE), MIAS_MM_PER_PX * 1000.0
    else:
        return None
    expected_rows = cols * capture[0] / capture[1]
    if cols < 1 or abs(rows - expected_rows) > max(1.0, PROPORTION_TOLERANCE * expected_rows):
        return None
    return size * capture[1] / cols
