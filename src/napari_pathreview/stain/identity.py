"""The "none" normaliser: returns its input, so callers never special-case a missing stain step."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from napari_pathreview.stain.base import StainNormalizer


class IdentityNormalizer(StainNormalizer):
    """Stain method "none": ``fit`` only checks its input; ``transform`` is the identity."""

    name: ClassVar[str] = "none"

    @property
    def is_fitted(self) -> bool:
        return True

    def _image_stats(self, image: np.ndarray) -> Any | None:
        return ()

    def _combine_stats(self, stats: list[Any]) -> None:
        return None

    def _transform_numpy(self, image: np.ndarray) -> tuple[np.ndarray, str | None]:
        return image, None

    def _transform_torch(self, batch: Any) -> tuple[Any, Any]:
        import torch

        return batch, torch.zeros(batch.shape[0], dtype=torch.long, device=batch.device)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        return None
