"""The CAM methods this project offers, by name: the one list widgets, CLIs and recipes share.

Torch-free (no pytorch-grad-cam import), so a widget's or a CLI's choices can list the methods
without loading a model stack; :mod:`.cams` binds each name to the class that computes it.
"""

from __future__ import annotations

from napari_pathreview.errors import InvalidInputError

__all__ = ["CAM_METHOD_CLASSES", "CAM_METHOD_NAMES", "resolve_method"]

#: Canonical method name → the class computing it: a pytorch-grad-cam class, or ours in
#: :mod:`.cams` where ours is faster (BatchedScoreCAM, EconomyEigenCAM). The single place a
#: method is registered; the order is the order users see.
CAM_METHOD_CLASSES: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "scorecam": "BatchedScoreCAM",
    "eigencam": "EconomyEigenCAM",
    "layercam": "LayerCAM",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "eigengradcam": "EigenGradCAM",
}
CAM_METHOD_NAMES: tuple[str, ...] = tuple(CAM_METHOD_CLASSES)

_ALIASES = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++"}


def resolve_method(name: str) -> str:
    """Canonical name of a CAM method: case, '-', '_' and spaces are ignored ('Grad-CAM++').

    Raises:
        InvalidInputError: no such method (the message lists the methods).
    """
    key = str(name).lower().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in CAM_METHOD_CLASSES:
        raise InvalidInputError(
            f"unknown CAM method {name!r}; choose from {', '.join(CAM_METHOD_NAMES)}"
        )
    return key
