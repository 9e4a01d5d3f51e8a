"""The Hub dataset card (README.md): YAML metadata derived from the schemas + a rendered template."""

from __future__ import annotations

from importlib import resources
from string import Template
from typing import Any

import yaml

from ._schemas import record_features
from .pairs import SETTINGS

__all__ = ["card_metadata", "render_card", "LICENSE_TEXT"]

LICENSE_TEXT = {
    "compre_cap": (
        "The questions and scene graphs are derived from the CompreCap annotations (CC BY 4.0). "
        "The images are COCO images, which remain under the Flickr terms of use of their owners."
    ),
    "docci": "The questions and scene graphs are derived from DOCCI (CC BY 4.0), images included.",
    "tuning": "The preference data is derived from Pixmo-cap (ODC-BY 1.0); images remain under their owners' terms.",
}


class _NoAliasDumper(yaml.SafeDumper):
    """Repeat shared structures (the features of every config) instead of emitting YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def card_metadata(
    *,
    pretty_name: str,
    license: str,
    image_columns: tuple[str, ...],
    pairs: dict[str, int],
    shard_bytes: dict[str, int],
    shard_glob: str = "data/{setting}-*.tar",
) -> dict[str, Any]:
    """The card's YAML: ``configs`` (default + one per setting) and explicit ``dataset_info``.

    ``num_bytes`` of a split is the size of its shards; ``datasets`` checks ``num_examples``
    against what it loads.
    """
    features = record_features(image_columns)._to_yaml_list()
    total = sum(pairs.values())

    def split(name: str, setting: str) -> dict[str, Any]:
        return {"name": name, "num_bytes": shard_bytes.get(setting, 0), "num_examples": pairs.get(setting, 0)}

    default_splits = [split(s, s) for s in SETTINGS]
    configs: list[dict[str, Any]] = [
        {
            "config_name": "default",
            "default": True,
            "data_files": [{"split": s, "path": shard_glob.format(setting=s)} for s in SETTINGS],
        }
    ]
    infos: list[dict[str, Any]] = [{"config_name": "default", "features": features, "splits": default_splits}]
    for setting in SETTINGS:
        configs.append(
            {"config_name": setting, "data_files": [{"split": "test", "path": shard_glob.format(setting=setting)}]}
        )
        infos.append(
            {
                "config_name": setting,
                "features": features,
                "splits": [split("test", setting)],
            }
        )
    return {
        "pretty_name": pretty_name,
        "license": license,
        "language": ["en"],
        "task_categories": ["visual-question-answering", "multiple-choice"],
        "tags": ["hallucination", "multimodal", "benchmark", "negative-queries", "webdataset"],
        "size_categories": [_size_category(total)],
        "configs": configs,
        "dataset_info": infos,
    }


def render_card(template_name: str, metadata: dict[str, Any], values: dict[str, Any]) -> str:
    """``---\\n<yaml>---\\n`` followed by ``hub_cards/<template_name>`` filled with ``values``."""
    text = resources.files("finer_datasets.hub_cards").joinpath(template_name).read_text("utf-8")
    body = Template(text).substitute({k: str(v) for k, v in values.items()})
    header = yaml.dump(metadata, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n{body}"
