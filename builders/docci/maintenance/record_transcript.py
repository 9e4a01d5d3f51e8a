"""Record the sample's bundled transcript against the scripted stand-in model (no real model).

    .venv/bin/python builders/docci/maintenance/record_transcript.py

It starts ``finer_datasets.testing.scripted.ScriptedServer`` on 127.0.0.1 with FINER-DOCCI's
scripted handlers, builds the sample with every model stage -- extraction, relations, relation
validation, negatives with the entropy filter, Wh questions -- (LLM ``scripted``, MLLM
``scripted-vl``), and copies the build's ``transcript.jsonl`` to ``builders/docci/sample/``.
Afterwards ``finer build docci --sample --replay sample --out OUT`` rebuilds it offline.
Run it again whenever a prompt template or the sample changes (new prompts mean new keys).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from finer_datasets.core.build import build
from finer_datasets.core.registry import get_builder
from finer_datasets.llm import LLMConfig, LLMRun, PromptSet, Thresholds, TranscriptStore
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

HERE = Path(__file__).resolve().parent.parent


def record(out: Path, *, source: Path | None = None, concurrency: int = 16) -> Path:
    """Build ``source`` (default: the sample) against the scripted model into ``out``; return the
    exported transcript."""
    builder = get_builder("docci")
    with ScriptedServer(ScriptedLLM(handlers=builder.scripted_handlers())) as server:
        def config(model: str) -> LLMConfig:
            return LLMConfig(base_url=server.url, model=model, api_key_env="", concurrency=concurrency, backoff=0.01)

        run = LLMRun.create(TranscriptStore(out.with_name(out.name + ".sqlite")), llm=config("scripted"),
                            mllm=config("scripted-vl"), stages=dict(builder.llm_stages),
                            prompts=PromptSet.for_builder(builder.prompts_dir()),
                            thresholds=Thresholds(**builder.entropy_thresholds))
        build(builder, source=source or builder.sample_dir(), out=out, llm=run, progress=False)
    return out / "transcript.jsonl"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        transcript = record(Path(tmp) / "sample")
        shutil.copyfile(transcript, HERE / "sample" / "transcript.jsonl")
    print(f"wrote {HERE / 'sample' / 'transcript.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
