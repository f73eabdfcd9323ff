"""The image modalities the project handles: the one list cards, recipes, models and reviews check.

Dependency-free so any module (the light card and CLI modules included) can import it.
"""

from __future__ import annotations

HISTOLOGY = "histology"
MAMMOGRAM = "mammogram"
MODALITIES: tuple[str, ...] = (HISTOLOGY, MAMMOGRAM)
