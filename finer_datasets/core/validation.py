"""JSON Schemas: loading, compiled validation, and the Hugging Face features derived from them.

Schemas are the contract of every file a build reads or writes; the published ones live in the
repository's top-level ``schemas/`` (installed as ``finer_datasets.schemas``), and callers pass their path.
Records are validated with a compiled validator (``jsonschema_rs``) before they are written; the
dataset card's ``dataset_info.features`` is derived from the same schemas (never inferred from data).
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs

from finer_datasets.errors import RecordValidationError

__all__ = ["schema_name", "schema_path", "shipped_folder", "load_schema", "validate", "validator", "schema_to_features"]


@lru_cache(maxsize=None)
def shipped_folder(package: str) -> Path:
    """The folder of a data package shipped beside the code: ``schemas`` (the repository's top-level
    ``schemas/``) or ``hub_cards``, installed as ``finer_datasets.<package>`` (found by the import
    system, so a wheel and an editable checkout both work)."""
    spec = importlib.util.find_spec(f"finer_datasets.{package}")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"finer_datasets.{package} is not installed beside the code")
    return Path(list(spec.submodule_search_locations)[0])


def schema_path(name: str) -> Path:
    """``mcq_image`` -> the published ``schemas/mcq_image.schema.json``."""
    return shipped_folder("schemas") / f"{name}.schema.json"


def schema_name(schema: str | Path) -> str:
    """``.../mcq_image.schema.json`` -> ``mcq_image`` (how errors name a schema)."""
    return Path(schema).name.removesuffix(".json").removesuffix(".schema")


@lru_cache(maxsize=None)
def _load(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text("utf-8"))


def load_schema(schema: str | Path) -> dict[str, Any]:
    """The parsed JSON Schema in the file ``schema``."""
    return _load(str(schema))


@lru_cache(maxsize=None)
def _compiled(path: str) -> Any:
    return jsonschema_rs.validator_for(_load(path))


def validator(schema: str | Path) -> Any:
    """The compiled (draft 2020-12) validator of the schema file ``schema``."""
    return _compiled(str(schema))


def validate(schema: str | Path, instance: Any, *, key: str | None = None) -> None:
    """Validate ``instance`` against schema ``name``; raise :class:`RecordValidationError`.

    The fast path is one compiled ``is_valid`` call; only an invalid instance pays for the
    error report (first error, with its JSON path).
    """
    compiled = validator(schema)
    if compiled.is_valid(instance):
        return
    error = next(iter(compiled.iter_errors(instance)))
    path = "/" + "/".join(str(p) for p in error.instance_path)
    raise RecordValidationError(error.message, schema=schema_name(schema), key=key, path=path)


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
    if isinstance(kind, list):  # ["string", "null"]: a nullable value is the same feature
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise ValueError(f"cannot map a union of types to a feature: {kind!r}")
        kind = kinds[0]
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
