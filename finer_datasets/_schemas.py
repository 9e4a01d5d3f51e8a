"""JSON Schemas: loading, compiled validation, and the Hugging Face features derived from them.

The schemas in ``schemas/`` are the contract of every file a build writes. Records are
validated with a compiled validator (``jsonschema_rs``) before they are written; the dataset
card's ``dataset_info.features`` is derived from the same schemas (never inferred from data).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema_rs

from ._errors import RecordValidationError

__all__ = ["SCHEMA_NAMES", "load_schema", "validate", "validator", "schema_to_features", "record_features"]

SCHEMA_NAMES = ("mcq_pair", "scene_graph", "manifest", "negatives")


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed JSON Schema ``schemas/<name>.schema.json``."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = resources.files("finer_datasets.schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def validator(name: str) -> Any:
    """Return the compiled (draft 2020-12) validator of schema ``name``."""
    return jsonschema_rs.validator_for(load_schema(name))


def validate(name: str, instance: Any, *, key: str | None = None) -> None:
    """Validate ``instance`` against schema ``name``; raise :class:`RecordValidationError`.

    The fast path is one compiled ``is_valid`` call; only an invalid instance pays for the
    error report (first error, with its JSON path).
    """
    compiled = validator(name)
    if compiled.is_valid(instance):
        return
    error = next(iter(compiled.iter_errors(instance)))
    path = "/" + "/".join(str(p) for p in error.instance_path)
    raise RecordValidationError(error.message, schema=name, key=key, path=path)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k not in ("$ref", "description")}}
    return node


def schema_to_features(node: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """Translate a JSON Schema node into a ``datasets`` feature (imports ``datasets``)."""
    import datasets

    root = node if root is None else root
    node = _resolve(node, root)
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties")
        if not props:
            raise ValueError("objects need explicit properties to become features")
        return {name: schema_to_features(sub, root) for name, sub in props.items()}
    if kind == "array":
        list_cls = getattr(datasets, "List", None) or datasets.Sequence
        return list_cls(schema_to_features(node["items"], root))
    scalar = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool"}
    if kind in scalar:
        return datasets.Value(scalar[kind])
    if "const" in node or "enum" in node:
        return datasets.Value("string")
    raise ValueError(f"cannot map schema node to a feature: {node!r}")


def record_features(image_columns: tuple[str, ...] = ("jpg",)) -> Any:
    """Features of a FINER WebDataset split as ``load_dataset`` returns it.

    ``__key__``/``__url__`` come from the WebDataset loader, one ``Image`` column per image
    extension present in the build, and ``json`` is the MCQ-pair record of
    ``mcq_pair.schema.json``.
    """
    import datasets

    features: dict[str, Any] = {}
    for column in image_columns:
        features[column] = datasets.Image()
    features["json"] = schema_to_features(load_schema("mcq_pair"))
    features["__key__"] = datasets.Value("string")
    features["__url__"] = datasets.Value("string")
    return datasets.Features(features)
