"""What the model pickers show: registry entries filtered by modality, and a card summary.

Reads the registry each time the pickers refresh, so a model registered by
``pathreview train`` in a terminal appears without restarting napari.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_METRIC_KEYS = ("auc", "roc_auc", "balanced_accuracy", "accuracy", "f1", "macro_f1", "kappa")


def _registry() -> Any:
    from napari_pathreview.registry import ModelRegistry

    return ModelRegistry()


def registered_cards() -> list[Any]:
    """The card of every registered model version, newest version of each name first."""
    registry = _registry()
    cards = []
    for summary in registry.list():
        try:
            cards.append(registry.card(summary.name, str(summary.version)))
        except Exception as error:  # noqa: BLE001 - one broken entry must not hide the others
            logger.warning("skipping model %s@%s: %s", summary.name, summary.version, error)
    cards.sort(key=lambda c: (c.name, -int(c.version) if str(c.version).isdigit() else 0))
    return cards


def model_ref(card: Any) -> str:
    return f"{card.name}@{card.version}"


def model_choices(modality: str | None) -> list[tuple[str, str]]:
    """(label, ``name@version``) pairs for a picker; only ``modality``'s models unless None."""
    choices = []
    for card in registered_cards():
        if modality is not None and card.modality != modality:
            continue
        task = "" if card.task == card.modality else f" · {card.task}"
        label = f"{model_ref(card)}{task} · {card.modality}"
        choices.append((label, model_ref(card)))
    return choices


def card_for(ref: str) -> Any:
    """The card of ``name@version``."""
    from napari_pathreview.registry import parse_model_ref

    name, version = parse_model_ref(ref)
    return _registry().card(name, version)


def headline_metrics(metrics: dict[str, Any]) -> str:
    """A short 'auc 0.91 · accuracy 0.85' string from a card's (possibly nested) metrics."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}{key}.", sub)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix[:-1]] = float(value)

    walk("", metrics or {})
    picked = []
    for key, value in flat.items():
        leaf = key.rsplit(".", 1)[-1].lower()
        if any(leaf.endswith(k) for k in _METRIC_KEYS) and (
            "test" in key or "val" in key or "." not in key
        ):
            picked.append(f"{key} {value:.3f}")
    return "\n".join(picked[:4]) if picked else "no validation metrics recorded"


def describe_card(card: Any) -> str:
    """Task, classes, modality and validation metrics, for the line under the model picker."""
    demo = " (demo model)" if "demo" in (card.description or "").lower() else ""
    task = "" if card.task == card.modality else f"{card.task} · "
    return (
        f"{task}{card.modality}{demo}\n"
        f"classes: {', '.join(card.classes)}\n"
        f"{headline_metrics(card.metrics)}"
    )
