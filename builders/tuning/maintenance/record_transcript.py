"""Record the sample's bundled transcript against the scripted stand-in model (no real LLM).

    .venv/bin/python builders/tuning/maintenance/record_transcript.py

It builds ``builders/tuning/sample`` with the builder's test context (a local image server over
``sample/images``), the LLM being ``finer_datasets.testing.scripted.ScriptedServer`` answering with
``builders/tuning/scripted.py``, and copies the build's ``transcript.jsonl`` to
``sample/transcript.jsonl``. Afterwards ``finer build tuning --sample --replay sample --out OUT``
builds the sample offline. Run it again whenever a prompt template or the sample changes.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from finer_datasets.core.build import build
from finer_datasets.core.registry import get_builder
from finer_datasets.llm import LLMConfig, LLMRun, PromptSet, TranscriptStore
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer


def main() -> int:
    builder = get_builder("tuning")
    sample = builder.sample_dir()
    with tempfile.TemporaryDirectory() as tmp, builder.test_context(sample) as options, \
            ScriptedServer(ScriptedLLM(handlers=builder.scripted_handlers())) as server:
        config = LLMConfig(base_url=server.url, model="scripted", api_key_env="", backoff=0.01)
        llm = LLMRun.create(TranscriptStore(Path(tmp) / "t.sqlite"), llm=config, stages=dict(builder.llm_stages),
                            prompts=PromptSet.for_builder(builder.prompts_dir()))
        result = build(builder, source=sample, out=Path(tmp) / "sample", llm=llm, options=options, progress=False)
        shutil.copyfile(result.out / "transcript.jsonl", sample / "transcript.jsonl")
    print(f"wrote {sample / 'transcript.jsonl'} ({result.manifest['counts']['records']} tuples, "
          f"{result.manifest['counts']['images']} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
