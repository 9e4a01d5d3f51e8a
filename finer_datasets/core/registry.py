"""The builder registry: every folder ``builders/<name>/`` with a ``builder.py`` is a dataset.

Nothing is listed by hand. :func:`get_builder` finds builders in three places:

* the folders of the ``finer_datasets.builders`` package (the repository's ``builders/``);
* installed packages that declare an entry point in the group ``finer_datasets.builders``;
* folders registered at run time with :func:`register_builder_folder` (tests, private datasets).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

from finer_datasets.core.builder import DatasetBuilder
from finer_datasets.errors import UsageError

__all__ = ["get_builder", "builder_names", "register_builder", "register_builder_folder", "builder_classes"]

logger = logging.getLogger(__name__)

_registered: dict[str, type[DatasetBuilder]] = {}
_discovered = False
_USER_PACKAGE = "_finer_user_builders"


def _builders_in(module: types.ModuleType) -> list[type[DatasetBuilder]]:
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, DatasetBuilder) and obj.__module__ == module.__name__
            and "name" in vars(obj)]


def register_builder(cls: type[DatasetBuilder]) -> type[DatasetBuilder]:
    """Register a builder class under its ``name`` (usable as a class decorator)."""
    existing = _registered.get(cls.name)
    if existing is not None and existing is not cls:
        raise UsageError(f"two builders are named {cls.name!r}: {existing.__module__} and {cls.__module__}")
    _registered[cls.name] = cls
    return cls


def register_builder_folder(folder: str | Path) -> type[DatasetBuilder]:
    """Import ``folder/builder.py`` (a builder folder outside the package) and register its builder.

    The folder is imported as a package, so ``builder.py`` may use relative imports of its own
    modules. Returns the registered class.
    """
    folder = Path(folder).resolve()
    if not (folder / "builder.py").is_file():
        raise UsageError(f"{folder}: not a builder folder (no builder.py)")
    if _USER_PACKAGE not in sys.modules:
        sys.modules[_USER_PACKAGE] = types.ModuleType(_USER_PACKAGE)
        sys.modules[_USER_PACKAGE].__path__ = []  # type: ignore[attr-defined]
    package = f"{_USER_PACKAGE}.{folder.name}"
    spec = importlib.util.spec_from_file_location(package, folder / "__init__.py" if (folder / "__init__.py").is_file()
                                                  else folder / "builder.py", submodule_search_locations=[str(folder)])
    if (folder / "__init__.py").is_file():
        parent = importlib.util.module_from_spec(spec)
        sys.modules[package] = parent
        spec.loader.exec_module(parent)
    else:
        parent = types.ModuleType(package)
        parent.__path__ = [str(folder)]  # type: ignore[attr-defined]
        sys.modules[package] = parent
    module = importlib.import_module(f"{package}.builder")
    found = _builders_in(module)
    if len(found) != 1:
        raise UsageError(f"{folder / 'builder.py'}: expected exactly one DatasetBuilder subclass with a name, found {len(found)}")
    return register_builder(found[0])


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module("finer_datasets.builders")
    for folder in sorted(Path(p) for p in package.__path__):
        for child in sorted(folder.iterdir()):
            if child.is_dir() and (child / "builder.py").is_file() and not child.name.startswith(("_", ".")):
                module = importlib.import_module(f"finer_datasets.builders.{child.name}.builder")
                for cls in _builders_in(module):
                    register_builder(cls)
    for ep in entry_points(group="finer_datasets.builders"):
        try:
            register_builder(ep.load())
        except (ImportError, AttributeError) as exc:  # a broken plug-in must not break the others
            logger.warning("cannot load builder entry point %s: %s", ep.name, exc)


def builder_classes() -> dict[str, type[DatasetBuilder]]:
    """Every registered builder class by name, sorted."""
    _discover()
    return dict(sorted(_registered.items()))


def builder_names() -> list[str]:
    return list(builder_classes())


def get_builder(name: str, **kwargs: object) -> DatasetBuilder:
    """A new instance of the builder named ``name``."""
    classes = builder_classes()
    if name not in classes:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(classes) or 'none'}")
    return classes[name](**kwargs)
