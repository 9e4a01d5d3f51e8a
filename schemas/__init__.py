"""The published JSON Schemas of finer-datasets, one file each (installed as ``finer_datasets.schemas``).

Every record a build writes and every file format it reads or writes has its schema here, and the
code validates against these files (never a copy):

==============================  ==============================================================
``mcq_image.schema.json``       the ``json`` member of a FINER benchmark sample (one image, its
                                scene graph and every MCQ pair about it)
``tuning_image.schema.json``    the ``json`` member of a FINER-Tuning sample (one image, its
                                phrases and preference tuples)
``manifest.schema.json``        ``manifest.json`` of a build (format 2); ``manifest-v1`` for 1.x
``negatives.schema.json``       a precomputed negatives file (``finer build --negatives``)
``compre_cap_anno.schema.json`` CompreCap's ``anno.json`` (FINER-CompreCap's source)
``docci_line.schema.json``      one line of DOCCI's ``docci_descriptions.jsonlines``
==============================  ==============================================================
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FOLDER", "schema_path"]

FOLDER = Path(__file__).parent


def schema_path(name: str) -> Path:
    """``mcq_image`` -> the path of ``mcq_image.schema.json`` in this folder."""
    return FOLDER / f"{name}.schema.json"
