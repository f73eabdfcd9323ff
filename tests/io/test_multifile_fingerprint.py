"""The slide cache's fingerprint of slides spread over several files: the tile files count.

A MIRAX's pixels are in its ``Data*.dat`` files and a Hamamatsu VMS's in the JPEGs its index
names; a re-scan rewrites those and may leave the ``.mrxs``, ``Slidedat.ini`` and the ``.vms``
exactly as they were. The fingerprint (the slide part of every cache key) must change then.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from slide_builders import tissue_image

from multifile_slides import write_mirax, write_vms
from napari_pathreview.io import open_slide


def _fingerprint(path: Path) -> str:
    with open_slide(path) as slide:
        return slide.fingerprint


def _rescan(file: Path) -> None:
    """Rewrite ``file`` as a re-scan does: other bytes, the same size, a later time."""
    before = file.stat().st_mtime_ns
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    os.utime(file, ns=(before + 10**9, before + 10**9))


def test_the_generated_mirax_is_a_slide_openslide_reads_with_its_pixels(tmp_path) -> None:
    image = tissue_image(256, 384)
    path = write_mirax(tmp_path / "case.mrxs", image)
    with open_slide(path) as slide:
        assert slide.backend == "openslide" and slide.properties["openslide.vendor"] == "mirax"
        assert slide.level_shapes == ((256, 384), (128, 192)) and slide.um_per_px == 0.25
        level0 = slide.read_region(0, 0, 0, 256, 384)
    assert np.abs(level0.astype(int) - image).mean() < 3  # JPEG at quality 95


def test_a_rescanned_mirax_data_file_changes_the_fingerprint(tmp_path) -> None:
    path = write_mirax(tmp_path / "case.mrxs", tissue_image(256, 384))
    folder = path.with_suffix("")
    before = _fingerprint(path)
    assert _fingerprint(path) == before  # untouched: the same
    index = {f: f.read_bytes() for f in (path, folder / "Slidedat.ini", folder / "Index.dat")}
    _rescan(folder / "Data0001.dat")
    assert all(f.read_bytes() == data for f, data in index.items())  # the index files as they were
    assert _fingerprint(path) != before


def test_a_mirax_data_file_resized_at_the_same_time_changes_the_fingerprint(tmp_path) -> None:
    path = write_mirax(tmp_path / "case.mrxs", tissue_image(256, 384))
    data = path.with_suffix("") / "Data0000.dat"
    before, stat = _fingerprint(path), data.stat()
    with open(data, "ab") as handle:
        handle.write(b"\0" * 16)
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _fingerprint(path) != before


def test_a_rescanned_image_file_of_a_vms_changes_the_fingerprint(tmp_path) -> None:
    path = write_vms(tmp_path / "case.vms", tissue_image(256, 512))
    with open_slide(path) as slide:
        assert slide.properties["openslide.vendor"] == "hamamatsu"
        before = slide.fingerprint
    _rescan(tmp_path / "case.jpg")
    assert _fingerprint(path) != before
