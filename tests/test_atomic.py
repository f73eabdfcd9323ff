"""Files written whole or not at all (sessions, and whatever else moves a temporary into place)."""

from __future__ import annotations

import ast
import os
import tarfile
from pathlib import Path
from typing import IO

import pytest

import napari_pathreview
from napari_pathreview._atomic import atomic_path, write_atomically


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


def test_a_writer_by_name_that_raises_leaves_the_previous_file_whole_and_no_partial_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(b"epoch 3")
    with pytest.raises(OSError, match="No space left"), atomic_path(path) as temporary:
        temporary.write_bytes(b"epoch 4, half")
        raise OSError("No space left on device")
    assert path.read_bytes() == b"epoch 3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_file_written_by_name_is_moved_into_place_readable_as_any_new_file(
    tmp_path: Path,
) -> None:
    """tarfile, torch.save and text writers open the temporary file by its name; what lands
    has the umask's permissions (mkstemp's 0600 left a shared manifest unreadable to the
    group)."""
    member = tmp_path / "card.yaml"
    member.write_text("name: m\n", encoding="utf-8")
    path = tmp_path / "export" / "m.tar"
    path.parent.mkdir()
    mask = os.umask(0o022)
    try:
        with atomic_path(path) as temporary, tarfile.open(temporary, "w") as archive:
            archive.add(member, arcname="m/card.yaml")
    finally:
        os.umask(mask)
    with tarfile.open(path) as archive:
        assert archive.getnames() == ["m/card.yaml"]
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.tar"]


def _moves_a_file_into_place(call: ast.Call) -> bool:
    """``os.replace(a, b)`` or ``Path.replace(target)`` (str/datetime/dataclasses ``replace``
    take two arguments or keywords)."""
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr != "replace":
        return False
    if isinstance(func.value, ast.Name) and func.value.id == "os":
        return True
    return len(call.args) == 1 and not call.keywords


def test_every_file_moved_into_place_goes_through_the_one_atomic_writer() -> None:
    package = Path(napari_pathreview.__file__).parent
    elsewhere = [
        f"{path.relative_to(package)}:{node.lineno}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "_atomic.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and _moves_a_file_into_place(node)
    ]
    assert elsewhere == []
