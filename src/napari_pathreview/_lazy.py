"""Lazy package attributes (PEP 562): a package names what it exports, modules load on first use.

Importing ``napari_pathreview.review`` or ``.inference`` must not pull in SQLAlchemy or torch
(the CLI answers simple errors before heavy imports; readers stay light), so each package
maps its public names to the module that defines them and this builds the hooks once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_attributes(
    package: str, table: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` serving ``table``'s names lazily.

    Args:
        package: The package's ``__name__`` (for the AttributeError message).
        table: Public name → the module that defines it.
        public: The package's ``__all__``.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return list(public)

    return __getattr__, __dir__
