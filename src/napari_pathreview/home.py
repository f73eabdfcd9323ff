"""Where the plugin keeps its state: the model registry and the review database."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "PATHREVIEW_HOME"


def pathreview_home() -> Path:
    """The home folder: ``$PATHREVIEW_HOME`` if set, else the platform's user data folder.

    Created on first use so callers can write into it directly.
    """
    configured = os.environ.get(HOME_ENV)
    if configured:
        home = Path(configured).expanduser()
    else:
        from platformdirs import user_data_dir

        home = Path(user_data_dir("napari-pathreview", appauthor=False))
    home.mkdir(parents=True, exist_ok=True)
    return home
