"""The dataset card (``README.md``): YAML metadata derived from the record schema + the builder's
card template (``hub_cards/<name>.md``) filled with the build's values.

The YAML declares one config (``default``) whose splits are the builder's splits
(``data/<split>-*.tar``) and explicit ``dataset_info.features``: one ``Image`` column per image
extension in the build, ``json`` (from the record schema, never inferred from data), and the
WebDataset loader's ``__key__`` / ``__url__``. So ``load_dataset(folder_or_repo)`` with no config
name gives one typed row per image, and the Hub viewer shows the same types.
"""

from __future__ import annotations

from string import Template
from typing import Any, Mapping, Sequence

import yaml

from finer_datasets.core.validation import load_schema, schema_to_features
from finer_datasets.errors import FinerError

__all__ = ["sample_features", "card_metadata", "render_card", "SHARD_GLOB"]

SHARD_GLOB = "data/{split}-*.tar"


class _NoAliasDumper(yaml.SafeDumper):
    """Repeat shared structures instead of emitting YAML anchors (the Hub's parser dislikes them)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def sample_features(record_schema: Any, image_columns: Sequence[str] = ("jpg",)) -> Any:
    """The ``datasets.Features`` of one per-image WebDataset row: image column(s), ``json`` (from
    ``record_schema``, a schema file path), ``__key__`` and ``__url__`` (imports ``datasets``)."""
    import datasets

    features: dict[str, Any] = {column: datasets.Image() for column in image_columns}
    features["json"] = schema_to_features(load_schema(record_schema))
    features["__key__"] = datasets.Value("string")
    features["__url__"] = datasets.Value("string")
    return datasets.Features(features)


def card_metadata(
    *,
    pretty_name: str,
    license: str,
    record_schema: Any,
    image_columns: Sequence[str],
    samples: Mapping[str, int],
    shard_bytes: Mapping[str, int],
    size: int,
    task_categories: Sequence[str],
    tags: Sequence[str],
    version: str | None = None,
    data_digest: str | None = None,
) -> dict[str, Any]:
    """The card's YAML block: one ``default`` config with the builder's splits and explicit
    ``dataset_info`` (``num_bytes`` of a split is its shards' size; ``datasets`` checks
    ``num_examples`` against what it loads).

    The config's ``description`` names the version and ``data_digest`` (the shards' content, see
    :func:`finer_datasets.core.manifest.data_digest`). ``datasets`` keys its cache of a folder on
    the folder's name and a hash of this YAML (not on the files' content), so without it a rebuilt
    folder with the same features would load the previous build's rows from the cache."""
    features = sample_features(record_schema, tuple(image_columns))._to_yaml_list()
    splits = list(samples)
    return {
        "pretty_name": pretty_name,
        "license": license,
        "language": ["en"],
        "task_categories": list(task_categories),
        "tags": list(tags),
        "size_categories": [_size_category(size)],
        "configs": [{"config_name": "default", "default": True,
                     "data_files": [{"split": s, "path": SHARD_GLOB.format(split=s)} for s in splits],
                     **({"description": f"{pretty_name} {version or ''}".rstrip() + f"; data sha256:{data_digest}"}
                        if data_digest else {})}],
        "dataset_info": [{"config_name": "default", "features": features,
                          "splits": [{"name": s, "num_bytes": shard_bytes.get(s, 0), "num_examples": samples[s]}
                                     for s in splits]}],
    }


def render_card(template: str, metadata: dict[str, Any], values: dict[str, Any], *, name: str = "card.md") -> str:
    """``---\\n<yaml>---\\n`` followed by ``template`` with its ``$placeholders`` filled from ``values``."""
    try:
        body = Template(template).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise FinerError(f"{name}: placeholder ${exc.args[0]} has no value (known: {', '.join(sorted(values))})") from exc
    except ValueError as exc:
        raise FinerError(f"{name}: {exc} (write $$ for a literal $)") from exc
    header = yaml.dump(metadata, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n{body}"
