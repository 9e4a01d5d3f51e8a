"""One build's LLM/MLLM set-up: the transcript, the clients and the stages that use them.

The set-up is recorded in the transcript (entry ``config``), so ``--replay TRANSCRIPT`` rebuilds
exactly the same stages with the same model names and parameters, and answers every request from
the transcript without any model access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import TranscriptMissError
from .client import ChatClient, LLMConfig
from .entropy import ChatLogprobsDiscriminator, LettersDiscriminator, Thresholds
from .prompts import prompts_fingerprint
from .stages import LLMAttributeRewriter, LLMNegatives, WhQuestionWriter
from .transcript import TranscriptStore

__all__ = ["LLMRun", "STAGES", "CONFIG_KEY"]

STAGES = ("negatives", "rewrite", "wh")
CONFIG_KEY = "config"


@dataclass
class LLMRun:
    """Everything model-related of one build."""

    store: TranscriptStore
    config: dict[str, Any]
    client: ChatClient | None = None
    negatives: LLMNegatives | None = None
    rewriter: LLMAttributeRewriter | None = None
    wh: WhQuestionWriter | None = None
    discriminator: Any = None
    _clients: list[Any] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        store: TranscriptStore,
        *,
        llm: LLMConfig,
        stages: tuple[str, ...] = STAGES,
        mllm: LLMConfig | None = None,
        mllm_local: str | None = None,
        thresholds: Thresholds | None = None,
        rounds: int = 3,
        seed: int = 0,
        transport: Any = None,
        vlm: Any = None,
    ) -> LLMRun:
        """A recording run (answers missing from the transcript are asked for)."""
        config = {
            "llm": {"model": llm.model, "temperature": llm.temperature, "max_tokens": llm.max_tokens, "seed": llm.seed},
            "stages": sorted(stages),
            "mllm": None,
            "thresholds": vars(thresholds) if thresholds else None,
            "rounds": rounds,
            "prompts": prompts_fingerprint(),
        }
        if mllm is not None:
            config["mllm"] = {"kind": "openai-logprobs", "model": mllm.model, "temperature": mllm.temperature,
                              "seed": mllm.seed}
        elif mllm_local is not None:
            config["mllm"] = {"kind": "hf-letters", "model": mllm_local}
        run = cls._assemble(store, config, llm=llm, mllm=mllm, seed=seed, transport=transport, vlm=vlm)
        previous = store.get(CONFIG_KEY)
        if previous is None:
            store.put(CONFIG_KEY, {}, config, {})
        return run

    @classmethod
    def replay(cls, path: str | Path, *, seed: int = 0) -> LLMRun:
        """A replaying run: set-up from the transcript's ``config`` entry, answers only from it."""
        store = TranscriptStore(path, replay=True)
        entry = store.get(CONFIG_KEY)
        if entry is None:
            raise TranscriptMissError(f"{path}: not a FINER transcript (no {CONFIG_KEY!r} entry)")
        config = entry["response"]
        llm = LLMConfig(base_url="http://replay.invalid", model=config["llm"]["model"],
                        temperature=config["llm"]["temperature"], max_tokens=config["llm"]["max_tokens"],
                        seed=config["llm"]["seed"], api_key_env="")
        mllm = None
        if config.get("mllm") and config["mllm"]["kind"] == "openai-logprobs":
            mllm = LLMConfig(base_url="http://replay.invalid", model=config["mllm"]["model"], api_key_env="",
                             temperature=config["mllm"]["temperature"], seed=config["mllm"]["seed"])
        return cls._assemble(store, config, llm=llm, mllm=mllm, seed=seed, transport=None, vlm=None)

    @classmethod
    def _assemble(cls, store: TranscriptStore, config: dict, *, llm: LLMConfig, mllm: LLMConfig | None, seed: int,
                  transport: Any, vlm: Any) -> LLMRun:
        client = ChatClient(llm, store, transport=transport)
        run = cls(store=store, config=config, client=client)
        run._clients.append(client)
        spec = config.get("mllm")
        if spec and spec["kind"] == "openai-logprobs":
            mclient = ChatClient(mllm, store, transport=transport)
            run._clients.append(mclient)
            run.discriminator = ChatLogprobsDiscriminator(mclient)
        elif spec and spec["kind"] == "hf-letters":
            if vlm is None and not store.replay:
                from ..engines import VisionLanguageModel

                vlm = VisionLanguageModel.from_pretrained(spec["model"])
            run.discriminator = LettersDiscriminator(vlm, spec["model"], store)
            run._clients.append(run.discriminator)
        thresholds = Thresholds(**config["thresholds"]) if config.get("thresholds") else None
        if "negatives" in config["stages"]:
            run.negatives = LLMNegatives(client, discriminator=run.discriminator, thresholds=thresholds,
                                         rounds=config["rounds"], seed=seed)
        if "rewrite" in config["stages"]:
            run.rewriter = LLMAttributeRewriter(client)
        if "wh" in config["stages"]:
            run.wh = WhQuestionWriter(client)
        return run

    def used_keys(self) -> set[str]:
        keys = {CONFIG_KEY}
        for c in self._clients:
            keys |= set(c.used)
        return keys

    def usage(self) -> dict[str, int]:
        """Deterministic totals over this build's requests (the same when replayed)."""
        total = {"requests": 0, "unique_prompts": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0}
        for c in self._clients:
            if isinstance(c, ChatClient):
                for k, v in c.usage_summary().items():
                    total[k] += v
            else:
                total["requests"] += c.lookups
                total["unique_prompts"] += len(c.used)
                total["cache_hits"] += c.lookups - len(c.used)
        return total

    def live(self) -> dict[str, int]:
        """What happened on the wire this run (logged, not recorded: it differs on a rerun)."""
        out: dict[str, int] = {}
        for c in self._clients:
            for k, v in getattr(c, "live", {}).items():
                out[k] = out.get(k, 0) + v
        return out

    def manifest(self, transcript_entries: int) -> dict[str, Any]:
        return {
            "model": self.config["llm"]["model"],
            "stages": self.config["stages"],
            "mllm": self.config.get("mllm"),
            "prompts": self.config["prompts"],
            "usage": self.usage(),
            "entropy_filter": self.negatives.filter_report() if self.negatives else None,
            "transcript": {"path": "transcript.jsonl", "entries": transcript_entries},
        }
