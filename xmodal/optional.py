"""Optional dependencies: import them lazily, and say which extra installs them when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from xmodal.errors import XmodalError


class MissingExtraError(XmodalError):
    """An optional package a feature needs is not installed."""


def require(
    module: str, extra: str, purpose: str, *, package: str | None = None, hint: str | None = None
) -> ModuleType:
    """Import `module`, or raise `MissingExtraError` naming the pip extra that provides it.

    `hint` replaces the "pip install 'xmodal[extra]'" advice when an extra cannot be used.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".")[0]
        advice = hint or f"install it with: pip install 'xmodal[{extra}]'"
        raise MissingExtraError(
            f"{purpose} needs the optional package {name!r}, which is not installed or does not "
            f"import ({type(exc).__name__}: {exc}); {advice}"
        ) from None
