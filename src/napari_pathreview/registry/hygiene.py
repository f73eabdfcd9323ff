"""Clean up after registry writers that died: their staging folders under ``.tmp``.

``register`` and ``import`` write into ``.tmp/<uuid>`` and rename it into place; a process
killed in between leaves the folder behind (weights can be hundreds of MB). Each later
write, holding the registry lock, removes staging folders older than
:data:`STALE_AFTER_S` — old enough that no live writer can still be filling them.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

logger = logging.getLogger(__name__)

STALE_AFTER_S = 10 * 60


def remove_stale_staging(
    tmp_dir: Path, keep: Path | None = None, max_age_s: float = STALE_AFTER_S
) -> list[Path]:
    """Delete entries of ``tmp_dir`` untouched for ``max_age_s`` (call with the lock held).

    Args:
        tmp_dir: The registry's staging folder.
        keep: The caller's own staging folder, never removed.
        max_age_s: Age (by modification time) after which an entry counts as abandoned.

    Returns:
        The removed paths.
    """
    if not tmp_dir.is_dir():
        return []
    cutoff = time.time() - max_age_s
    removed = []
    for entry in tmp_dir.iterdir():
        if keep is not None and entry == keep:
            continue
        try:
            if entry.lstat().st_mtime >= cutoff:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as error:  # another cleaner got there first, or no permission
            logger.debug("could not remove stale staging %s: %s", entry, error)
            continue
        removed.append(entry)
    if removed:
        logger.info("removed %d abandoned staging folder(s) from %s", len(removed), tmp_dir)
    return removed
