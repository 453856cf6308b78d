"""Backends that run a `XyloConfig`: the registry.

``get_backend("fast")`` / ``get_backend("xylosim")`` return a fresh `Backend`; imports are
lazy, so choosing one backend never loads the other's dependencies (numba, Rockpool).
"""

from __future__ import annotations

import importlib

from aspen_deploy.backends.base import Backend, RunResult

# name -> (module, class)
_REGISTRY: dict[str, tuple[str, str]] = {
    "fast": ("aspen_deploy.backends.fast", "FastBackend"),
    "xylosim": ("aspen_deploy.backends.xylosim", "XyloSimBackend"),
}
BACKENDS: tuple[str, ...] = tuple(_REGISTRY)


class UnknownBackendError(ValueError):
    """A backend name that is not in the registry."""


def get_backend(name: str) -> Backend:
    """A new backend instance by name (one of `BACKENDS`)."""
    if name not in _REGISTRY:
        raise UnknownBackendError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()


__all__ = ["BACKENDS", "Backend", "RunResult", "UnknownBackendError", "get_backend"]
