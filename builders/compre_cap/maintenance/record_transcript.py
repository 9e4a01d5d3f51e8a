"""Record the sample's bundled transcript against the scripted stand-in model (no real LLM).

    .venv/bin/python builders/compre_cap/maintenance/record_transcript.py

It starts ``finer_datasets.testing.scripted.ScriptedServer`` on 127.0.0.1 (answering this
builder's own prompts with its ``scripted_handlers()``), builds the sample with every LLM
stage and the entropy filter (LLM ``scripted``, discriminator ``scripted-vl``), and copies the
build's ``transcript.jsonl`` to ``builders/compre_cap/sample/transcript.jsonl``. Afterwards
``finer build compre_cap --sample --replay sample --out OUT`` exercises the LLM path offline.
Run it again whenever a prompt template changes (new prompts mean new transcript keys).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from finer_datasets import get_builder
from finer_datasets.cli import main as finer
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

HERE = Path(__file__).resolve().parents[1]


def main() -> int:
    handlers = get_builder("compre_cap").scripted_handlers()
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(ScriptedLLM(handlers=handlers)) as server:
        out = Path(tmp) / "sample"
        code = finer(["build", "compre_cap", "--sample", "--out", str(out), "--no-progress",
                      "--llm-base-url", server.url, "--llm-model", "scripted",
                      "--mllm-base-url", server.url, "--mllm-model", "scripted-vl"])
        if code:
            return code
        shutil.copyfile(out / "transcript.jsonl", HERE / "sample" / "transcript.jsonl")
    print(f"wrote {HERE / 'sample' / 'transcript.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
