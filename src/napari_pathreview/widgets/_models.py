"""What the model pickers show: registry entries filtered by modality, and a card summary.

Reads the registry each time the pickers refresh, so a model registered by
``pathreview train`` in a terminal appears without restarting napari. A widget keeps a
:class:`CardCatalog`: pickers refresh on every layer change, and re-reading every card each
time stalled the UI; the catalog re-reads only when the registry folders changed.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def _registry() -> Any:
    from napari_pathreview.registry import ModelRegistry

    return ModelRegistry()


def registered_cards(registry: Any = None) -> list[Any]:
    """The card of every registered model version, newest version of each name first."""
    registry = registry or _registry()
    cards = []
    for summary in registry.list():
        try:
            cards.append(registry.card(summary.name, str(summary.version)))
        except Exception as error:  # noqa: BLE001 - one broken entry must not hide the others
            logger.warning("skipping model %s@%s: %s", summary.name, summary.version, error)
    cards.sort(key=lambda c: (c.name, -int(c.version) if str(c.version).isdigit() else 0))
    return cards


class CardCatalog:
    """The registered cards, re-read only when the registry's folders change.

    Cards are immutable once registered (a new version is a new folder), so each is read
    once; the listing is refreshed when the modification times of the registry folder or
    of a model's folder change, or when ``$PATHREVIEW_HOME`` points elsewhere.
    """

    def __init__(self) -> None:
        self._registry: Any = None
        self._home: str | None = None
        self._stamp: tuple[int, ...] | None = None
        self._cards: list[Any] = []
        self._by_ref: dict[str, Any] = {}

    def registry(self) -> Any:
        import os

        from napari_pathreview.home import HOME_ENV

        home = os.environ.get(HOME_ENV, "")
        if self._registry is None or home != self._home:
            self._registry, self._home = _registry(), home
            self._stamp, self._by_ref = None, {}
        return self._registry

    def _folder_stamp(self) -> tuple[int, ...] | None:
        root = self.registry().root
        try:
            names = sorted(p for p in root.iterdir() if p.is_dir())
            return (root.stat().st_mtime_ns, *(p.stat().st_mtime_ns for p in names))
        except OSError:
            return None

    def cards(self) -> list[Any]:
        """Every registered card (see :func:`registered_cards`), cached."""
        stamp = self._folder_stamp()
        if stamp is None or stamp != self._stamp:
            self._cards = registered_cards(self.registry())
            self._by_ref.update({model_ref(card): card for card in self._cards})
            self._stamp = stamp
        return self._cards

    def card(self, ref: str) -> Any:
        """The card of ``name@version`` (read once)."""
        self.registry()
        if ref not in self._by_ref:
            self._by_ref[ref] = card_for(ref, self.registry())
        return self._by_ref[ref]


def model_ref(card: Any) -> str:
    return f"{card.name}@{card.version}"


def model_choices(
    modality: str | None, catalog: CardCatalog | None = None
) -> list[tuple[str, str]]:
    """(label, ``name@version``) pairs for a picker; only ``modality``'s models unless None."""
    choices = []
    for card in catalog.cards() if catalog is not None else registered_cards():
        if modality is not None and card.modality != modality:
            continue
        task = "" if card.task == card.modality else f" · {card.task}"
        label = f"{model_ref(card)}{task} · {card.modality}"
        choices.append((label, model_ref(card)))
    return choices


def card_for(ref: str, registry: Any = None) -> Any:
    """The card of ``name@version``."""
    from napari_pathreview.registry import parse_model_ref

    name, version = parse_model_ref(ref)
    return (registry or _registry()).card(name, version)


def describe_card(card: Any) -> str:
    """Task, classes, modality and test metrics (with n and CI), under the model picker."""
    from napari_pathreview.widgets._panel import metric_lines

    demo = " (demo model)" if "demo" in (card.description or "").lower() else ""
    task = "" if card.task == card.modality else f"{card.task} · "
    tta = getattr(card, "tta", "none")
    views = f" · fitted under TTA {tta}" if tta != "none" else ""
    return f"{task}{card.modality}{demo}{views}\nclasses: {', '.join(card.classes)}\n" + (
        "\n".join(metric_lines(card.metrics, limit=2))
    )
