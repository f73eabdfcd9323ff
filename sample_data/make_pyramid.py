"""Build sample_data/slides/he_pyramid.tif: a small tiled pyramidal TIFF from a real H&E tile.

Usage (from the repository root):
    .venv/bin/python sample_data/make_pyramid.py [--source PNG] [--out TIF]

The source is ``HEnorm_python_example2.png`` from ../shared/data/he_reference (see
ATTRIBUTION.md). Tiles of 256 pixels, 3 levels (1024, 512, 256), JPEG quality 90.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from napari_pathreview.io.pyramid import write_pyramidal_tiff

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = (
    HERE.parent.parent / "shared" / "data" / "he_reference" / "HEnorm_python_example2.png"
)


def main() -> None:
    """Parse arguments and write the pyramid."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=HERE / "slides" / "he_pyramid.tif")
    args = parser.parse_args()
    with Image.open(args.source) as image:
        rgb = np.asarray(image.convert("RGB"))
    path = write_pyramidal_tiff(rgb, args.out, tile=256, n_levels=3, compression="jpeg")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
