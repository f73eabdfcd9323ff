"""Write a file whole or not at all: into a temporary file beside it, then moved over it.

A process killed (or a disk filled) part way through leaves the previous file as it was and a
hidden ``.NAME.*.partial`` at most, never half a file under the real name. ``os.replace`` is
atomic within one folder on POSIX and Windows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(handle)`` on a temporary binary file beside ``path``, then move it onto
    ``path``; on any failure the temporary file is removed and ``path`` is left untouched."""
    path = Path(path)
    # a fresh name, opened exclusively, so the file gets the umask's permissions (mkstemp's are
    # the owner's only: a session shared in a group folder would become unreadable to the group)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        with temporary.open("xb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
