"""Checks every registered builder gets for free (tensorflow_datasets' ``DatasetBuilderTestCase`` style).

``tests/test_builders.py`` runs each check for each name of ``builder_names()``; a new folder under
``builders/`` is tested without writing a test. Each check builds the builder's ``dummy_data/``
(a tiny source in the real layout). A builder whose stages need a model
(``requires_llm``) is built against :class:`~finer_datasets.testing.scripted.ScriptedServer`
answering with the builder's own ``scripted_handlers()``, and then replayed from the transcript it
wrote. The checks:

* builds from dummy data, with at least one record, and ``verify`` passes;
* two builds with the same seed are byte-identical;
* every record validates against the record schema with an independent validator (``jsonschema``);
* ``load_dataset(folder)`` (no config) gives one row per sample whose ``json`` equals the shard's;
* the card's ``dataset_info.features`` equal the features derived from the record schema;
* a flipped byte in a shard fails ``verify``;
* (model stages) a replay of the exported ``transcript.jsonl`` rebuilds the folder byte for byte.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from finer_datasets.core.build import BuildResult, build
from finer_datasets.core.builder import DatasetBuilder
from finer_datasets.core.card import sample_features
from finer_datasets.core.manifest import verify
from finer_datasets.core.validation import load_schema
from finer_datasets.errors import VerificationError

__all__ = ["dummy_build", "folder_files", "CHECKS"]


def _expect(condition: object, message: str) -> None:
    """A check's assertion (explicit, so it also holds under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def folder_files(root: Path) -> dict[str, bytes]:
    """Every file of a folder, by relative path (for byte-identity checks)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@contextmanager
def _model(builder: DatasetBuilder, transcript: Path, replay: Path | None = None) -> Iterator[Any]:
    """The LLM run of a dummy build: ``None``, a recording run against the scripted server, or a replay."""
    if not builder.requires_llm:
        yield None
        return
    from finer_datasets.llm import LLMConfig, LLMRun, PromptSet, TranscriptStore
    from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

    prompts = PromptSet.for_builder(builder.prompts_dir())
    if replay is not None:
        yield LLMRun.replay(replay, stages=builder.llm_stages, prompts=prompts)
        return
    with ScriptedServer(ScriptedLLM(handlers=builder.scripted_handlers())) as server:
        config = LLMConfig(base_url=server.url, model="scripted", api_key_env="", backoff=0.01)
        yield LLMRun.create(TranscriptStore(transcript), llm=config, stages=dict(builder.llm_stages), prompts=prompts)


def dummy_build(builder: DatasetBuilder, out: Path, *, seed: int = 0, replay: Path | None = None) -> BuildResult:
    """Build the builder's ``dummy_data/`` into ``out`` (see the module docstring)."""
    source = builder.dummy_data_dir()
    with builder.test_context(source) as options, _model(builder, out.with_name(out.name + ".sqlite"), replay) as llm:
        return build(builder, source=source, out=out, seed=seed, progress=False, llm=llm, options=options)


def check_builds_and_verifies(builder: DatasetBuilder, tmp: Path) -> None:
    result = dummy_build(builder, tmp / "a")
    manifest = verify(result.out)
    _expect(manifest["dataset"] == builder.name and manifest["version"] == builder.version, "manifest names")
    _expect(sum(manifest["counts"]["samples"].values()) > 0, "the dummy data gave no sample")


def check_byte_determinism(builder: DatasetBuilder, tmp: Path) -> None:
    a, b = dummy_build(builder, tmp / "a"), dummy_build(builder, tmp / "b")
    _expect(folder_files(a.out) == folder_files(b.out), "two builds with the same seed differ")


def _records(folder: Path) -> list[dict[str, Any]]:
    from finer_datasets.core.reader import iter_records

    return list(iter_records(folder, verify(folder)))


def check_records_match_the_schema(builder: DatasetBuilder, tmp: Path) -> None:
    import jsonschema

    schema = load_schema(builder.record_schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)  # independent of the build's validator
    records = _records(dummy_build(builder, tmp / "a").out)
    _expect(records, "no records")
    for record in records:
        validator.validate(record)


def check_load_dataset_round_trip(builder: DatasetBuilder, tmp: Path) -> None:
    import datasets

    out = dummy_build(builder, tmp / "a").out
    loaded = datasets.load_dataset(str(out))
    _expect(list(loaded) == list(builder.splits), f"splits {list(loaded)} != {list(builder.splits)}")
    rows = [row for split in builder.splits for row in loaded[split]["json"]]
    _expect(json.dumps(rows, sort_keys=True) == json.dumps(_records(out), sort_keys=True),
            "load_dataset rows differ from the shard records")


def check_card_features_match_the_schema(builder: DatasetBuilder, tmp: Path) -> None:
    import datasets
    import yaml

    out = dummy_build(builder, tmp / "a").out
    header = (out / "README.md").read_text("utf-8").split("---\n", 2)[1]
    info = yaml.safe_load(header)["dataset_info"][0]
    columns = tuple(name for name in datasets.Features._from_yaml_list(info["features"]) if name in ("jpg", "png"))
    _expect(datasets.Features._from_yaml_list(info["features"]) == sample_features(builder.record_schema, columns),
            "card features differ from the record schema's")


def check_verify_catches_a_flipped_byte(builder: DatasetBuilder, tmp: Path) -> None:
    out = dummy_build(builder, tmp / "a").out
    shard = sorted((out / "data").glob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 1
    shard.write_bytes(bytes(data))
    try:
        verify(out)
    except VerificationError as exc:
        _expect(shard.name in str(exc), f"verify did not name {shard.name}: {exc}")
    else:
        raise AssertionError("verify accepted a changed shard")


def check_replay_is_byte_identical(builder: DatasetBuilder, tmp: Path) -> None:
    if not builder.requires_llm and not builder.llm_stages:
        return
    if not builder.requires_llm:  # optional stages: record them against the scripted model first
        builder = type(builder)()
        builder.requires_llm = True  # instance attribute: this check only
    recorded = dummy_build(builder, tmp / "rec")
    replayed = dummy_build(builder, tmp / "rep", replay=recorded.out / "transcript.jsonl")
    _expect(folder_files(recorded.out) == folder_files(replayed.out), "the replayed build differs")


CHECKS = {
    "builds_and_verifies": check_builds_and_verifies,
    "byte_determinism": check_byte_determinism,
    "records_match_the_schema": check_records_match_the_schema,
    "load_dataset_round_trip": check_load_dataset_round_trip,
    "card_features_match_the_schema": check_card_features_match_the_schema,
    "verify_catches_a_flipped_byte": check_verify_catches_a_flipped_byte,
    "replay_is_byte_identical": check_replay_is_byte_identical,
}
