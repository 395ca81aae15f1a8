"""Lazy package exports (PEP 562): a package names what it offers, and each name imports its module on first use.

    _EXPORTS = {"verify": "verification", "FrechetDistance": "facegan.metrics.frechet"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

So `import facegan.recognition` loads no torch; `facegan.recognition.verify` imports
`facegan.recognition.verification` then, once, and keeps the value in the package (later look-ups skip
`__getattr__`). A module is a submodule name, or a full dotted path. Core module: no torch.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package` (its `__name__`, while it is being imported) for `exports` (name -> module)."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module if module.startswith("facegan.") else f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
