"""finer-datasets: builders, loaders and baselines for the FINER benchmarks (arXiv 2603.17662).

Public API (importing this package is light: no torch, no ``datasets`` until you load data)::

    # loading
    load_finer(path, view="images" | "pairs" | "questions" | "trl", setting=...)
    stream_finer(shards, view, shuffle=..., seed=...)   # the same rows streamed with webdataset
    # building, verifying
    build, get_builder, builder_names, register_builder_folder, verify
    # data model and pure, seeded MCQ construction
    SceneGraph, SGObject, SGAttribute, SGRelation
    MCQ, MCQPair, yesno_pair, wh_pair, pairs_for_image, KLimits, SETTINGS, LETTERS
    # negatives
    NegativesProvider, LexicalNegatives, PrecomputedNegatives
    # scoring
    parse_answer, score
    # errors (finer_datasets.errors holds the tree and EXIT_CODES)
    FinerError, UsageError, SourceError, NegativesError, StrictModeError, RecordValidationError,
    VerificationError, ReleaseError, PredictionsError, LLMError, TranscriptMissError, OutputError, QualityError

The package is grouped by concern: ``core`` (the build core, which knows no dataset),
``scene_graph``, ``mcq``, ``llm``, ``fetch``, ``eval``, ``hub``, ``train``, ``testing``; the
datasets themselves are folders under ``builders/``.
"""

from __future__ import annotations

from typing import Any

from finer_datasets._version import __version__
from finer_datasets.constants import LETTERS, SETTINGS
from finer_datasets.errors import (
    FinerError,
    LLMError,
    NegativesError,
    OutputError,
    PredictionsError,
    QualityError,
    RecordValidationError,
    ReleaseError,
    SourceError,
    StrictModeError,
    TranscriptMissError,
    UsageError,
    VerificationError,
)
from finer_datasets.mcq.construct import MCQ, MCQPair, wh_pair, yesno_pair
from finer_datasets.mcq.pairs import KLimits, pairs_for_image
from finer_datasets.scene_graph.graph import (
    SceneGraph,
    SGAttribute,
    SGObject,
    SGRelation,
)
from finer_datasets.scene_graph.negatives import (
    LexicalNegatives,
    NegativesProvider,
    PrecomputedNegatives,
)

__all__ = [
    "__version__",
    "SceneGraph", "SGObject", "SGAttribute", "SGRelation",
    "MCQ", "MCQPair", "yesno_pair", "wh_pair", "pairs_for_image", "KLimits", "SETTINGS", "LETTERS",
    "NegativesProvider", "LexicalNegatives", "PrecomputedNegatives",
    "build", "get_builder", "builder_names", "register_builder_folder", "verify", "load_finer", "stream_finer",
    "FinerError", "UsageError", "SourceError", "NegativesError", "StrictModeError", "RecordValidationError",
    "VerificationError", "ReleaseError", "PredictionsError", "LLMError", "TranscriptMissError", "OutputError",
    "QualityError", "parse_answer", "score",
]

_LAZY = {
    "build": ("finer_datasets.core.build", "build"),
    "get_builder": ("finer_datasets.core.registry", "get_builder"),
    "builder_names": ("finer_datasets.core.registry", "builder_names"),
    "register_builder_folder": ("finer_datasets.core.registry", "register_builder_folder"),
    "verify": ("finer_datasets.core.manifest", "verify"),
    "load_finer": ("finer_datasets.hub.load", "load_finer"),
    "stream_finer": ("finer_datasets.hub.stream", "stream_finer"),
    "parse_answer": ("finer_datasets.eval.answers", "parse_answer"),
    "score": ("finer_datasets.eval.scoring", "score"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'finer_datasets' has no attribute {name!r}")
