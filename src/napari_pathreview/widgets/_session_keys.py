"""One rule for restoring a saved session's settings: key by key, each checked as a typed value
is, a bad one named rather than stopping the restore.

The Analyze settings, the Review form, the work queue and the layers (``_session_layers``) all
restore through :class:`SkippedSettings`: a key a session lacks (saved before it was kept) leaves
the dock's default; a value the dock would refuse (a wrong type, an unknown choice, a queue folder
that is gone) is left as the dock holds it and named with its dotted key and why; a key this
version does not know is named too and ignored. One warning names the session file and every
such key, and everything else is restored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from napari_pathreview.errors import PathReviewError

#: What one key's restore may raise: a user error or a widget refusing the value.
REFUSED = (PathReviewError, ValueError, TypeError, KeyError)


class SkippedSettings:
    """The keys of a session that were not restored, each with why."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._asked: dict[int, set[str]] = {}  # id(section) → the names restore looked for

    def _ask(self, section: Mapping[str, Any], name: str) -> None:
        self._asked.setdefault(id(section), set()).add(name)

    def put(self, key: str, section: Mapping[str, Any], name: str, apply: Callable) -> None:
        """``apply(section[name])`` unless the session lacks ``name``; a refusal is noted
        under ``key`` (the dotted path in the file) instead of stopping the restore."""
        self._ask(section, name)
        if name in section:
            self.attempt(key, lambda: apply(section[name]))

    def attempt(self, key: str, apply: Callable[[], Any], outcome: str = "") -> bool:
        """``apply()``; a refusal is noted under ``key`` (then ``outcome``: what became of it)
        instead of stopping the restore. Returns whether it went through."""
        try:
            apply()
        except REFUSED as error:
            reason = str(error.args[0]) if isinstance(error, KeyError) and error.args else error
            self.problems.append(f"{key}: {reason}{outcome}")
            return False
        return True

    def section(self, key: str, parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        """The object ``parent[name]`` holds; an absent or null one is empty (nothing kept),
        anything else is noted under ``key`` and read as empty."""
        self._ask(parent, name)
        value = parent.get(name)
        if isinstance(value, Mapping):
            return value
        if value is not None:
            self.problems.append(f"{key}: must be an object of settings, got {value!r}")
        return {}

    def known(self, section: Mapping[str, Any], *names: str) -> None:
        """Names ``section`` may hold that are read elsewhere (not through :meth:`put`)."""
        for name in names:
            self._ask(section, name)

    def unknown(self, prefix: str, section: Mapping[str, Any]) -> None:
        """Note each key of ``section`` that restore never looked for (another version's, or
        a typo): reported, not fatal."""
        asked = self._asked.get(id(section), set())
        for name in section:
            if name not in asked:
                key = f"{prefix}.{name}" if prefix else str(name)
                self.problems.append(f"{key}: not a setting this version keeps (ignored)")

    def message(self, path: Any) -> str:
        """The warning shown after a restore: the session file and every key left out."""
        return (
            f"{path}: {len(self.problems)} saved setting(s) or layer(s) not restored (a setting "
            "left as the dock holds it, a layer left out; the rest is restored): "
            + "; ".join(self.problems)
        )


def boolean(value: Any) -> bool:
    """A check box's value: JSON's true or false, nothing else (``bool("false")`` is True)."""
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, got {value!r}")
    return value


def number(value: Any) -> float:
    """A number for a slider (the slider refuses one out of its range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"must be a number, got {value!r}")
    return float(value)


def text(value: Any) -> str:
    """A line of text (a line edit would show ``5`` or ``None`` as if typed)."""
    if not isinstance(value, str):
        raise TypeError(f"must be text, got {value!r}")
    return value


def setter(widget: Any, check: Callable[[Any], Any] = lambda v: v) -> Callable[[Any], None]:
    """Set ``widget.value`` to the checked value (a picker refuses one not among its choices)."""

    def apply(value: Any) -> None:
        widget.value = check(value)

    return apply


def chosen(combo: Any, what: str) -> Callable[[Any], None]:
    """Pick a layer or model by name; None (nothing was chosen) leaves the picker as it is."""

    def apply(value: Any) -> None:
        if value is None:
            return
        if value not in combo.choices:
            raise ValueError(f"{value!r}: no such {what} here")
        combo.value = value

    return apply
