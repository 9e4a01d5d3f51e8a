"""Dataset builders, one folder each (code, ``VERSION``, ``RELEASE_NOTES.md``, ``dummy_data/``, ``sample/``).

Installed as ``finer_datasets.builders``; :func:`get_builder` returns one by name.
"""

from __future__ import annotations

from importlib import import_module

__all__ = ["BUILDERS", "get_builder"]

# name -> "module:class" (imported on demand)
BUILDERS = {
    "compre_cap": "finer_datasets.builders.compre_cap.builder:CompreCap",
}


def get_builder(name: str):
    """Return a new builder instance for dataset ``name``."""
    from finer_datasets._errors import FinerError

    if name not in BUILDERS:
        raise FinerError(f"unknown dataset {name!r}; known: {', '.join(sorted(BUILDERS))}")
    target = BUILDERS[name]
    module, cls = target.split(":")
    return getattr(import_module(module), cls)()
