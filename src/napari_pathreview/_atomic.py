"""Write a file whole or not at all: into a temporary file beside it, then moved over it.

A process killed (or a disk filled) part way through leaves the previous file as it was and a
hidden ``.NAME.*.partial`` at most, never half a file under the real name. ``os.replace`` is
atomic within one folder on POSIX and Windows. Every file the package moves into place goes
through here (sessions, checkpoints, manifests, cohort tables, cached CAMs, exported models,
the demo slide); a writer that wants a stream uses :func:`write_atomically`, one that wants a
file name (``torch.save``, ``tarfile``, ``tifffile``, a text writer) :func:`atomic_path`.

No fsync: that guards against power loss, not a killed process, and costs seconds on large
files (a checkpoint every epoch). Each write gets a fresh temporary name, so two processes
writing the same file never write into one temporary file; the last to finish wins.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a new empty temporary file beside ``path`` to write by name; when the block ends,
    it is moved onto ``path``. If the block raises, the temporary file is removed and ``path``
    is left untouched.

    The temporary file is created exclusively under a fresh name, so it (and the file it
    becomes) gets the umask's permissions: ``mkstemp``'s are the owner's only, and a session or
    manifest shared in a group folder would become unreadable to the group.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    temporary.open("xb").close()  # before the try: a name that was taken is not ours to remove
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(handle)`` on a temporary binary file beside ``path``, then move it onto
    ``path``; on any failure the temporary file is removed and ``path`` is left untouched."""
    with atomic_path(path) as temporary, temporary.open("wb") as stream:
        write(stream)
    return Path(path)
