"""Opening the widgets must not import torch or timm: napari starts fast, models load on Run."""

from __future__ import annotations

import subprocess
import sys


def test_widget_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import napari_pathreview.widgets.analyze, napari_pathreview.widgets.review\n"
        "import napari_pathreview.widgets.workspace\n"
        "import napari_pathreview.demo\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
