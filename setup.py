"""Package discovery for setuptools (the metadata is in pyproject.toml).

Every folder under ``finer_datasets/`` and ``builders/`` is shipped, with all its files: adding a
dataset folder (``builders/<name>/`` with its prompts, sample and dummy data) needs no edit here.
``builders/`` is installed as ``finer_datasets.builders``, the published JSON Schemas of ``schemas/``
as ``finer_datasets.schemas`` and the card templates of ``hub_cards/`` as ``finer_datasets.hub_cards``. Maintenance scripts
(``builders/<name>/maintenance/``) and caches stay out of the wheel.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
ROOTS = {"finer_datasets": ROOT / "finer_datasets", "finer_datasets.builders": ROOT / "builders",
         "finer_datasets.schemas": ROOT / "schemas", "finer_datasets.hub_cards": ROOT / "hub_cards"}
SKIP = {"__pycache__", "maintenance"}


def walk():
    packages, package_dir, package_data = [], {}, {}
    for name, folder in ROOTS.items():
        package_dir[name] = folder.relative_to(ROOT).as_posix()
        for path in sorted([folder, *folder.rglob("*")]):
            if not path.is_dir() or SKIP & set(path.relative_to(folder).parts) or path.name.startswith("."):
                continue
            package = ".".join([name, *path.relative_to(folder).parts])
            packages.append(package)
            data = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc"))
            if data:
                package_data[package] = data
    return packages, package_dir, package_data


packages, package_dir, package_data = walk()
setup(packages=packages, package_dir=package_dir, package_data=package_data)
