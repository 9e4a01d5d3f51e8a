"""Load a LLaMA-Factory export of FINER-Tuning with LLaMA-Factory's own data loader (manual check).

LLaMA-Factory is not a dependency of finer-datasets (it pins older transformers/trl and needs
torchaudio, which has no build for our torch). Check an export in a scratch virtual environment
that sees our packages and has only llamafactory (no dependencies) and omegaconf added::

    python3.11 -m venv /tmp/lf-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/lf-venv/lib/python3.11/site-packages/zz_main.pth
    /tmp/lf-venv/bin/pip install --no-deps llamafactory && /tmp/lf-venv/bin/pip install omegaconf
    .venv/bin/finer export OUT --format llamafactory --out /tmp/lf      # or export_llamafactory(OUT, "/tmp/lf")
    /tmp/lf-venv/bin/python builders/tuning/maintenance/check_llamafactory.py /tmp/lf

It stands in an empty ``torchaudio`` module (imported by LLaMA-Factory's audio plugin only), loads
every ``dataset_info.json`` entry with ``llamafactory.data.loader._load_single_dataset`` (its file
loading and ``align_dataset``) and checks each aligned row: one image that exists, a user prompt
holding ``<image>``, two responses (ranking) or one (SFT). Checked with llamafactory 0.9.5.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
import tempfile
import types


def main(folder: str) -> int:
    with tempfile.TemporaryDirectory(prefix="lf-check-") as scratch:
        os.environ["DISABLE_VERSION_CHECK"] = "1"
        os.environ["HF_DATASETS_CACHE"] = os.path.join(scratch, "datasets")
        return _check(folder, scratch)


def _check(folder: str, scratch: str) -> int:
    stub = types.ModuleType("torchaudio")
    stub.__path__, stub.__spec__ = [], importlib.machinery.ModuleSpec("torchaudio", None)
    sys.modules.setdefault("torchaudio", stub)

    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    data_args = DataArguments(dataset_dir=folder)
    model_args = ModelArguments(model_name_or_path="none")
    training_args = Seq2SeqTrainingArguments(output_dir=os.path.join(scratch, "out"))
    with open(os.path.join(folder, "dataset_info.json"), encoding="utf-8") as f:
        names = list(json.load(f))
    for attr in get_dataset_list(names, folder):
        ds = _load_single_dataset(attr, model_args, data_args, training_args)
        for i, row in enumerate(ds):
            problems = []
            if len(row["_images"] or []) != 1 or not os.path.isfile(row["_images"][0]):
                problems.append(f"images {row['_images']}")
            if row["_prompt"][-1]["role"] != "user" or "<image>" not in row["_prompt"][0]["content"]:
                problems.append("prompt")
            if len(row["_response"]) != (2 if attr.ranking else 1):
                problems.append(f"{len(row['_response'])} responses")
            if problems:
                print(f"{attr.dataset_name} row {i}: {', '.join(problems)}", file=sys.stderr)
                return 1
        print(f"{attr.dataset_name}: {len(ds)} rows aligned by LLaMA-Factory (ranking={attr.ranking})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
