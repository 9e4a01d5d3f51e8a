"""Export a built FINER-Tuning folder for LLaMA-Factory (the paper trained with it, appendix C).

``finer export DIR --format llamafactory --out FOLDER`` writes, per split, the selected tuples in
LLaMA-Factory's *sharegpt* format (its ``data/README.md``: "Preference Dataset" and "Multimodal
Image Dataset")::

    FOLDER/dataset_info.json                  {"finer_tuning": {...}, "finer_tuning_validation": {...}}
    FOLDER/finer_tuning_train.jsonl           one tuple per line
    FOLDER/finer_tuning_validation.jsonl
    FOLDER/images/<image key>.<jpg|png>       each image once, the shard's bytes unchanged

A ranking line (DPO)::

    {"conversations": [{"from": "human", "value": "<image>Is there ... in this picture?"}],
     "chosen": {"from": "gpt", "value": "Yes, ..."}, "rejected": {"from": "gpt", "value": "No, but ..."},
     "images": ["images/<key>.jpg"], "id": ..., "subset": "obj", "query_type": "positive"}

and its ``dataset_info.json`` entry ``{"file_name": ..., "formatting": "sharegpt", "ranking": true,
"columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images":
"images"}}``. ``kind="sft"`` writes the chosen answer as the second turn instead (the SFT
ablation, Table 4) and an entry without ``ranking``. Image paths are relative to FOLDER, which is
LLaMA-Factory's ``dataset_dir`` (its default ``media_dir``). :func:`check_sharegpt` checks a folder
against that documented format (every line, every image path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finer_datasets.constants import require_kind
from finer_datasets.core.guard import EXPORT_TOOL, check_replace, export_marker, owned_folder, write_marker
from finer_datasets.core.staging import staged_folder
from finer_datasets.errors import SourceError, UsageError
from finer_datasets.preference.records import selected_tuples

__all__ = ["export_llamafactory", "check_sharegpt", "IMAGE_TOKEN", "KINDS"]

IMAGE_TOKEN = "<image>"
KINDS = ("ranking", "sft")
_COLUMNS = {"ranking": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
            "sft": {"messages": "conversations", "images": "images"}}


def _line(record_tuple: dict[str, Any], image: str, kind: str) -> dict[str, Any]:
    human = {"from": "human", "value": IMAGE_TOKEN + record_tuple["question"]}
    meta = {"images": [image], "id": record_tuple["id"], "subset": record_tuple["type"],
            "query_type": record_tuple["query"]}
    if kind == "sft":
        return {"conversations": [human, {"from": "gpt", "value": record_tuple["chosen"]}], **meta}
    return {"conversations": [human], "chosen": {"from": "gpt", "value": record_tuple["chosen"]},
            "rejected": {"from": "gpt", "value": record_tuple["rejected"]}, **meta}


def _entry_name(name: str, split: str) -> str:
    return name if split == "train" else f"{name}_{split}"


def _write(folder: Path, manifest: dict[str, Any], staging: Path, name: str, kind: str) -> dict[str, int]:
    from finer_datasets.core.reader import iter_samples

    (staging / "images").mkdir(parents=True)
    splits = sorted({f["split"] for f in manifest["files"] if f.get("split")}, key=lambda s: (s != "train", s))
    info: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for split in splits:
        file_name = f"{name}_{split}.jsonl"
        shards = {"files": [f for f in manifest["files"] if f.get("split") == split]}
        n = 0
        with open(staging / file_name, "w", encoding="utf-8") as out:
            for sample in iter_samples(folder, shards):
                record = sample["json"]
                if "tuples" not in record or "source" not in record:
                    raise UsageError(f"{folder}: not a FINER-Tuning build (sample {sample['__key__']} has no tuples)")
                extension = record["source"]["stored_as"]
                image = f"images/{sample['__key__']}.{extension}"
                (staging / image).write_bytes(sample[extension]["bytes"])
                for t in selected_tuples(record):
                    out.write(json.dumps(_line(t, image, kind), ensure_ascii=False, sort_keys=True) + "\n")
                    n += 1
        counts[split] = n
        entry: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt"}
        if kind == "ranking":
            entry["ranking"] = True
        entry["columns"] = dict(_COLUMNS[kind])
        info[_entry_name(name, split)] = entry
    (staging / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return counts


def export_llamafactory(folder: str | Path, out: str | Path, *, name: str = "finer_tuning", kind: str = "ranking",
                        overwrite: bool = False) -> dict[str, int]:
    """Write the LLaMA-Factory folder ``out`` from the verified build ``folder``; returns tuples per split.

    ``out`` must not exist (or be empty); with ``overwrite`` a previous export (a folder holding
    the marker ``.finer-output.json`` an export wrote, and nothing it does not list) is replaced.
    The rules are :func:`finer_datasets.core.guard.check_replace`'s; the folder appears
    complete or not at all (:func:`finer_datasets.core.guard.staged_folder`).
    """
    from finer_datasets.core.manifest import verify
    from finer_datasets.core.reader import iter_records

    if kind not in KINDS:
        raise UsageError(f"kind {kind!r}: use one of {', '.join(KINDS)}")
    folder, out = Path(folder), Path(out)
    manifest = verify(folder)
    require_kind(next(iter_records(folder, manifest), None), "preference", subject=str(folder),
                 action="a LLaMA-Factory export")
    fmt = "llamafactory" if kind == "ranking" else "llamafactory-sft"
    command = export_marker(fmt)

    def check() -> Path:
        return check_replace(out, owned=lambda path: owned_folder(path, EXPORT_TOOL), folder=True, overwrite=overwrite,
                             dataset=folder, writer=f"--format {fmt}")

    with staged_folder(check(), check) as staging:
        counts = _write(folder, manifest, staging, name, kind)
        write_marker(staging, command)
    return counts


def _fail(path: Path, line: Any, field: str, message: str) -> None:
    raise SourceError(message, path=path, record=line, field=field)


def _check_message(path: Path, line: int, field: str, message: Any, role: str) -> str:
    if not isinstance(message, dict) or message.get("from") != role or not isinstance(message.get("value"), str) \
            or not message["value"].strip():
        _fail(path, f"line {line}", field, f'expected {{"from": "{role}", "value": <non-empty text>}}')
    return message["value"]


def check_sharegpt(folder: str | Path) -> dict[str, int]:
    """Check every entry of ``folder/dataset_info.json`` and every line of its files against
    LLaMA-Factory's documented sharegpt format (preference or SFT, multimodal); returns lines per
    entry. The first problem raises :class:`SourceError` naming the file, line and field."""
    folder = Path(folder)
    info_path = folder / "dataset_info.json"
    try:
        info = json.loads(info_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"not a readable dataset_info.json ({exc})", path=info_path) from exc
    counts: dict[str, int] = {}
    for name, entry in info.items():
        ranking = bool(entry.get("ranking"))
        if entry.get("formatting") != "sharegpt" or entry.get("columns") != _COLUMNS["ranking" if ranking else "sft"]:
            _fail(info_path, name, "columns", "expected sharegpt formatting with the conversations/chosen/rejected/images"
                                              " columns (ranking) or conversations/images (SFT)")
        path = folder / entry["file_name"]
        n = 0
        for n, text in enumerate(path.read_text("utf-8").splitlines(), start=1):
            row = json.loads(text)
            turns = row.get("conversations")
            if not isinstance(turns, list) or not turns or len(turns) % 2 != (1 if ranking else 0):
                _fail(path, f"line {n}", "conversations", "expected human/gpt turns ending with a human turn (ranking)"
                                                          " or a gpt turn (SFT)")
            for i, turn in enumerate(turns):
                _check_message(path, n, f"conversations[{i}]", turn, "human" if i % 2 == 0 else "gpt")
            if ranking:
                chosen = _check_message(path, n, "chosen", row.get("chosen"), "gpt")
                if chosen == _check_message(path, n, "rejected", row.get("rejected"), "gpt"):
                    _fail(path, f"line {n}", "rejected", "the rejected answer equals the chosen one")
            images = row.get("images")
            tokens = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
            if not isinstance(images, list) or len(images) != tokens or tokens != 1:
                _fail(path, f"line {n}", "images", f"expected one image and one {IMAGE_TOKEN} token, got "
                                                   f"{len(images) if isinstance(images, list) else images!r} and {tokens}")
            if not (folder / images[0]).is_file():
                _fail(path, f"line {n}", "images", f"image file {images[0]} not found under {folder}")
        counts[name] = n
    return counts
