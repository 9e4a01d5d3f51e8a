"""finer-datasets: builders, loaders and baselines for the FINER benchmarks (arXiv 2603.17662).

Public API (importing this package is light: no torch, no ``datasets`` until you load data)::

    # data model and pure, seeded MCQ construction
    SceneGraph, SGObject, SGAttribute, SGRelation
    MCQ, MCQPair, yesno_pair, wh_pair, pairs_for_image, KLimits, SETTINGS
    # negatives
    NegativesProvider, LexicalNegatives, PrecomputedNegatives
    # building, verifying, loading
    build, get_builder, verify, load_finer, flatten_pairs
    # scoring
    parse_answer, score
    # errors (see finer_datasets._errors for the tree)
    FinerError, SourceError, NegativesError, StrictModeError, RecordValidationError, VerificationError,
    PredictionsError, LLMError, TranscriptMissError
    # LLM/MLLM stages: finer_datasets.llm (imported on demand)
"""

from __future__ import annotations

from typing import Any

from ._errors import (
    FinerError,
    LLMError,
    NegativesError,
    PredictionsError,
    RecordValidationError,
    SourceError,
    StrictModeError,
    TranscriptMissError,
    VerificationError,
)
from ._version import __version__
from .mcq import MCQ, MCQPair, wh_pair, yesno_pair
from .negatives import LexicalNegatives, NegativesProvider, PrecomputedNegatives
from .pairs import SETTINGS, KLimits, pairs_for_image
from .scene_graph import SceneGraph, SGAttribute, SGObject, SGRelation

__all__ = [
    "__version__",
    "SceneGraph", "SGObject", "SGAttribute", "SGRelation",
    "MCQ", "MCQPair", "yesno_pair", "wh_pair", "pairs_for_image", "KLimits", "SETTINGS",
    "NegativesProvider", "LexicalNegatives", "PrecomputedNegatives",
    "build", "get_builder", "verify", "load_finer", "flatten_pairs",
    "FinerError", "SourceError", "NegativesError", "StrictModeError", "RecordValidationError", "VerificationError",
    "PredictionsError", "LLMError", "TranscriptMissError", "parse_answer", "score",
]

_LAZY = {
    "build": ("finer_datasets._pipeline", "build"),
    "get_builder": ("finer_datasets.builders", "get_builder"),
    "verify": ("finer_datasets.manifest", "verify"),
    "load_finer": ("finer_datasets.load", "load_finer"),
    "flatten_pairs": ("finer_datasets.load", "flatten_pairs"),
    "parse_answer": ("finer_datasets.answers", "parse_answer"),
    "score": ("finer_datasets.scoring", "score"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'finer_datasets' has no attribute {name!r}")
