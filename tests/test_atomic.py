"""Files written whole or not at all (sessions, and whatever else moves a temporary into place)."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import pytest

from napari_pathreview._atomic import write_atomically


def test_a_write_cut_off_part_way_leaves_the_previous_file_whole_and_no_partial_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "review.session.json"
    path.write_text('{"format": "previous"}', encoding="utf-8")

    def half_then_fail(handle: IO[bytes]) -> None:
        handle.write(b'{"format": "napari-pathreview-sess')
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, half_then_fail)
    assert path.read_text(encoding="utf-8") == '{"format": "previous"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review.session.json"]


def test_a_finished_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(b"old")
    assert write_atomically(path, lambda handle: handle.write(b"new")) == path
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]
