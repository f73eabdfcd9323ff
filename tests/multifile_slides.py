"""Builders of small real multi-file slides, read by OpenSlide as the scanners' own files are.

* MIRAX (3DHISTECH ``.mrxs``): the ``.mrxs`` file beside a folder of the same stem holding
  ``Slidedat.ini`` (the layout), ``Index.dat`` (where each camera image lies) and the
  ``Data*.dat`` files (the JPEG images themselves), laid out as OpenSlide's MIRAX reader
  parses them (``openslide-vendor-mirax.c``): no position buffer, no overlap, two zoom levels.
* Hamamatsu VMS: a ``.vms`` key file naming a JPEG with restart markers (the tiles) and a
  map JPEG.

The tile pixels live only in the Data / JPEG files, so a test can rewrite them while the
index files stay as they were.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

MIRAX_SLIDE_ID = "0123456789abcdef0123456789abcdef"


def _jpeg(image: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def _mirax_levels(image: np.ndarray, tile: int, n_data: int) -> tuple[list, list[bytearray]]:
    """Each zoom level's index records (image index, offset, length, data file) and the data
    files' bytes: level 0 one camera image per tile, level 1 one per 2×2 (concat factor 1)."""
    height, width = image.shape[:2]
    across, down = width // tile, height // tile
    data = [bytearray() for _ in range(n_data)]
    levels = []
    for step in (1, 2):
        records = []
        for y in range(0, down, step):
            for x in range(0, across, step):
                block = image[y * tile : (y + step) * tile, x * tile : (x + step) * tile]
                if step > 1:
                    block = np.asarray(Image.fromarray(block).resize((tile, tile)))
                number = y * across + x
                encoded = _jpeg(block)
                fileno = number % n_data
                records.append((number, len(data[fileno]), len(encoded), fileno))
                data[fileno] += encoded
        levels.append(records)
    return levels, data


def _mirax_index(levels: list) -> bytes:
    """``Index.dat``: version, slide id, the hierarchical root, one data page per level."""
    head = b"01.02" + MIRAX_SLIDE_ID.encode()
    out = bytearray(head) + struct.pack("<ii", len(head) + 8, 0)  # hier root, nonhier root
    table = len(out)
    out += b"\0" * 4 * len(levels)
    for i, records in enumerate(levels):
        struct.pack_into("<i", out, table + 4 * i, len(out))
        out += struct.pack("<ii", 0, len(out) + 8)  # 0, the level's first page
        out += struct.pack("<ii", len(records), 0)  # records in the page, no next page
        for record in records:
            out += struct.pack("<iiii", *record)
    return bytes(out)


def write_mirax(
    path: Path, image: np.ndarray, *, tile: int = 64, um_per_px: float = 0.25, data_files: int = 2
) -> Path:
    """A MIRAX slide of ``image`` (its sides multiples of 2·``tile``), its camera images spread
    over ``data_files`` Data files; returns the ``.mrxs`` path."""
    path = Path(path)
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    levels, data = _mirax_levels(image, tile, data_files)
    for i, content in enumerate(data):
        (folder / f"Data{i:04d}.dat").write_bytes(bytes(content))
    (folder / "Index.dat").write_bytes(_mirax_index(levels))
    sections = "".join(
        f"[LAYER_0_LEVEL_{i}_SECTION]\nOVERLAP_X=0\nOVERLAP_Y=0\n"
        f"MICROMETER_PER_PIXEL_X={um_per_px * 2**i}\nMICROMETER_PER_PIXEL_Y={um_per_px * 2**i}\n"
        f"IMAGE_FORMAT=JPEG\nIMAGE_FILL_COLOR_BGR=16777215\nDIGITIZER_WIDTH={tile}\n"
        f"DIGITIZER_HEIGHT={tile}\nIMAGE_CONCAT_FACTOR={i}\n"
        for i in range(2)
    )
    files = "".join(f"FILE_{i}=Data{i:04d}.dat\n" for i in range(data_files))
    height, width = image.shape[:2]
    (folder / "Slidedat.ini").write_text(
        f"[GENERAL]\nSLIDE_ID={MIRAX_SLIDE_ID}\nIMAGENUMBER_X={width // tile}\n"
        f"IMAGENUMBER_Y={height // tile}\nOBJECTIVE_MAGNIFICATION=20\n"
        "CameraImageDivisionsPerSide=1\n[HIERARCHICAL]\nHIER_COUNT=1\n"
        "HIER_0_NAME=Slide zoom level\nHIER_0_COUNT=2\n"
        "HIER_0_VAL_0=ZoomLevel_0\nHIER_0_VAL_0_SECTION=LAYER_0_LEVEL_0_SECTION\n"
        "HIER_0_VAL_1=ZoomLevel_1\nHIER_0_VAL_1_SECTION=LAYER_0_LEVEL_1_SECTION\n"
        f"NONHIER_COUNT=0\nINDEXFILE=Index.dat\n[DATAFILE]\nFILE_COUNT={data_files}\n{files}"
        f"{sections}"
    )
    path.write_bytes(_jpeg(image[::8, ::8]))  # the .mrxs itself: a preview, not the tiles
    return path


def write_vms(path: Path, image: np.ndarray, *, um_per_px: float = 0.5) -> Path:
    """A Hamamatsu VMS slide of ``image`` (sides multiples of 32): ``<stem>.jpg`` (4:2:2, a
    restart marker every 4 MCUs: OpenSlide's tiles) and ``<stem>_map.jpg``; returns the
    ``.vms`` path."""
    path = Path(path)
    options = {"subsampling": 1, "restart_marker_blocks": 4}
    (path.parent / f"{path.stem}.jpg").write_bytes(_jpeg(image, **options))
    (path.parent / f"{path.stem}_map.jpg").write_bytes(_jpeg(image[::4, ::4], **options))
    height, width = image.shape[:2]
    path.write_text(
        "[Virtual Microscope Specimen]\nNoLayers=1\nNoJpegColumns=1\nNoJpegRows=1\n"
        f"ImageFile={path.stem}.jpg\nMapFile={path.stem}_map.jpg\n"
        f"PhysicalWidth={round(width * um_per_px * 1000)}\n"
        f"PhysicalHeight={round(height * um_per_px * 1000)}\n"
    )
    return path
