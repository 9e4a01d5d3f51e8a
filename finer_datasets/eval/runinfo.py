"""``run.json``: what produced a folder of answers, so that a report explains itself.

Every scoring run writes ``run.json`` next to its predictions and report: the model (id and
revision, or the endpoint that served it), the engine, the prompt template and its token budget,
the answer parser, the dataset (name, version, manifest digest), the package version, the seed
and the time. A run resumed into the same folder must be the same run: :func:`claim_run` refuses
(``OutputError``, exit 6) when any of :data:`IDENTITY` differs, instead of mixing answers of two
models, prompts or dataset versions in one ``predictions.jsonl``. Fields outside
:data:`IDENTITY` (time, package version, parser, endpoint, settings, limit) may change between the
sessions of one run; the latest values are kept.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from finer_datasets._version import __version__
from finer_datasets.core.guard import write_file
from finer_datasets.errors import OutputError

__all__ = ["RUN_FILE", "IDENTITY", "run_record", "claim_run", "read_run", "write_run", "dataset_identity",
           "is_run_folder"]

RUN_FILE = "run.json"
_PACKAGE = "finer-datasets"
_MAX_RUN_BYTES = 16 << 20  # a run record is a few KiB
#: what must match for answers to be resumed into one predictions file
IDENTITY = ("engine", "model", "model_revision", "model_commit", "prompt", "max_new_tokens", "dtype", "dataset")
_DATASET_KEYS = ("dataset", "version", "manifest_digest")


def dataset_identity(provenance: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a dataset's provenance that names its exact content."""
    if not provenance:
        return None
    return {key: provenance.get(key) for key in _DATASET_KEYS}


def run_record(*, engine: str, model: str | None, prompt: str | None, parser: str,
               dataset: Mapping[str, Any] | None, max_new_tokens: int | None = None,
               model_revision: str | None = None, model_commit: str | None = None, endpoint: str | None = None,
               dtype: str | None = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The ``run.json`` record of one scoring run (``extra`` keys are kept as given)."""
    return {
        "engine": engine,
        "model": model,
        "model_revision": model_revision,
        "model_commit": model_commit,
        "endpoint": endpoint,
        "prompt": prompt,
        "max_new_tokens": max_new_tokens,
        "dtype": dtype,
        "parser": parser,
        "dataset": dict(dataset) if dataset else None,
        "package": {"name": _PACKAGE, "version": __version__},
        "seed": seed,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


def read_run(folder: str | Path) -> dict[str, Any] | None:
    """The ``run.json`` of ``folder``, or ``None`` when it has none."""
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > _MAX_RUN_BYTES:
            raise OSError(f"over {_MAX_RUN_BYTES:,} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"{path}: unreadable run record ({exc}); move the folder aside or give another --out") from exc
    if not isinstance(data, dict):
        raise OutputError(f"{path}: not a run record (a JSON object); give another --out")
    return data


def _identity(record: Mapping[str, Any], key: str) -> Any:
    value = record.get(key)
    return dataset_identity(value) if key == "dataset" else value


def _write(path: Path, record: Mapping[str, Any]) -> None:
    write_file(path, json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def is_run_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a ``run.json`` that finer-datasets wrote (its ``package`` says so):
    the marker by which a scoring run recognises a report folder of its own."""
    if (Path(folder) / RUN_FILE).is_symlink():
        return False
    try:
        data = read_run(folder)
    except OutputError:  # unreadable, too large or not a JSON object: not ours
        return False
    package = data.get("package") if data else None
    return isinstance(package, dict) and package.get("name") == _PACKAGE


def write_run(folder: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` as ``folder/run.json`` (atomically), whatever was there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / RUN_FILE, record)
    return folder / RUN_FILE


def claim_run(folder: str | Path, record: Mapping[str, Any], *, has_answers: bool) -> dict[str, Any]:
    """Write ``record`` as ``folder/run.json``, or check it against the run already there.

    A folder that holds answers (``has_answers``) but no ``run.json`` cannot be attributed to any
    run and is refused; so is a ``run.json`` of a run that has answers when a field of
    :data:`IDENTITY` differs from ``record`` (``model_commit`` is compared only once known on
    both sides). A ``run.json`` without answers (a run that stopped before its first answer) is
    simply replaced. Returns the record written (``started`` carried over from the first session).
    """
    folder = Path(folder)
    path = folder / RUN_FILE
    previous = read_run(folder)
    if previous is None and has_answers:
        raise OutputError(f"{folder} holds answers but no {RUN_FILE}: they cannot be attributed to this run; "
                          "give another --out")
    merged = dict(record)
    if previous is not None and has_answers:
        differ = []
        for key in IDENTITY:
            old, new = _identity(previous, key), _identity(record, key)
            if key == "model_commit" and (old is None or new is None):
                merged[key] = old if new is None else new
                continue
            if old != new:
                differ.append(f"{key} {json.dumps(old)} -> {json.dumps(new)}")
        if differ:
            raise OutputError(f"{folder} holds a run made with another configuration ({'; '.join(differ)}); "
                              "resuming would mix answers: give another --out")
        merged["started"] = previous.get("started", previous.get("time"))
    else:
        merged["started"] = record.get("time")
    folder.mkdir(parents=True, exist_ok=True)
    _write(path, merged)
    return merged
