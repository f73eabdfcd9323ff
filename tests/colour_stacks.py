"""Builder of a pyramidal colour stack as a scanner's z-stack export lays it out: the frames'
tiled pages, each with its half-size level as a SubIFD (lossless, 0.5 µm pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def write_pyramidal_colour_stack(path: Path, frames: np.ndarray) -> Path:
    """``frames`` (F×Y×X×3 uint8) written to ``path`` as a two-level pyramid of RGB pages."""
    options = {"tile": (32, 32), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path) as writer:
        writer.write(
            frames, subifds=1, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", **options
        )
        writer.write(frames[:, ::2, ::2], subfiletype=1, **options)
    return path
