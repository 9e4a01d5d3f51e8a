"""Dataset card templates, one per dataset (installed as ``finer_datasets.hub_cards``).

``<builder name>.md`` is the body of the ``README.md`` a build writes: ``$placeholders`` are filled
from the build (the core's values and the builder's ``card_values``); the YAML header is generated
from the record schema (:mod:`finer_datasets.core.card`). A builder folder outside this repository
may keep its template as ``card.md`` beside its ``builder.py`` instead.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FOLDER", "card_path"]

FOLDER = Path(__file__).parent


def card_path(name: str) -> Path:
    """``compre_cap`` -> the path of ``compre_cap.md`` in this folder."""
    return FOLDER / f"{name}.md"
