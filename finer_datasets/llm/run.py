"""One build's model set-up: the transcript, the clients, the discriminator and the stages.

The stages are the builder's (``DatasetBuilder.llm_stages``: name -> stage class). A stage class
has ``tasks`` (the prompt templates it renders), a ``label`` for the card and
``from_run(run)``. The set-up is recorded in the transcript (entry ``config``), so
``--replay TRANSCRIPT`` rebuilds exactly the same stages with the same model names and parameters
and answers every request from the transcript without any model access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finer_datasets.constants import TRANSCRIPT_CONFIG_KEY
from finer_datasets.errors import TranscriptMissError, UsageError
from finer_datasets.llm.client import ChatClient, LLMConfig
from finer_datasets.llm.entropy import (
    ChatLogprobsDiscriminator,
    LettersDiscriminator,
    Thresholds,
)
from finer_datasets.llm.prompts import PromptSet
from finer_datasets.llm.transcript import TranscriptStore

__all__ = ["LLMRun", "CONFIG_KEY"]

CONFIG_KEY = TRANSCRIPT_CONFIG_KEY
_REPLAY_URL = "http://replay.invalid"


@dataclass
class LLMRun:
    """Everything model-related of one build."""

    store: TranscriptStore
    config: dict[str, Any]
    prompts: PromptSet
    client: ChatClient
    seed: int = 0
    discriminator: Any = None
    stages: dict[str, Any] = field(default_factory=dict)
    _clients: list[Any] = field(default_factory=list)

    @property
    def thresholds(self) -> Thresholds | None:
        return Thresholds(**self.config["thresholds"]) if self.config.get("thresholds") else None

    @property
    def rounds(self) -> int:
        return int(self.config.get("rounds", 3))

    def stage(self, name: str) -> Any:
        """The stage ``name`` when it runs in this build, else ``None``."""
        return self.stages.get(name)

    @classmethod
    def create(
        cls,
        store: TranscriptStore,
        *,
        llm: LLMConfig,
        stages: dict[str, type],
        prompts: PromptSet,
        mllm: LLMConfig | None = None,
        local_discriminator: tuple[str, Any] | None = None,
        thresholds: Thresholds | None = None,
        rounds: int = 3,
        seed: int = 0,
        transport: Any = None,
        preflight: bool = True,
    ) -> LLMRun:
        """A recording run: answers missing from the transcript are asked for.

        ``local_discriminator`` is ``(model name, score function)`` for a local MLLM. With
        ``preflight`` every endpoint is checked first (reachable, authorised, model served).
        """
        tasks = [task for stage in stages.values() for task in stage.tasks]
        config = {
            "llm": {"model": llm.model, "temperature": llm.temperature, "max_tokens": llm.max_tokens, "seed": llm.seed},
            "stages": sorted(stages),
            "mllm": None,
            "thresholds": vars(thresholds) if thresholds else None,
            "rounds": rounds,
            "prompts": prompts.fingerprint(tasks),
        }
        if mllm is not None:
            config["mllm"] = {"kind": "openai-logprobs", "model": mllm.model, "temperature": mllm.temperature,
                              "seed": mllm.seed}
        elif local_discriminator is not None:
            config["mllm"] = {"kind": "hf-letters", "model": local_discriminator[0]}
        run = cls._assemble(store, config, prompts, stages, llm=llm, mllm=mllm, seed=seed, transport=transport,
                            score=local_discriminator[1] if local_discriminator else None)
        if preflight:
            for client in run._clients:
                if isinstance(client, ChatClient):
                    client.preflight()
        if store.get(CONFIG_KEY) is None:
            store.put(CONFIG_KEY, {}, config, {})
        return run

    @classmethod
    def replay(cls, path: str | Path, *, stages: dict[str, type], prompts: PromptSet, seed: int = 0) -> LLMRun:
        """A replaying run: set-up from the transcript's ``config`` entry, answers only from it."""
        store = TranscriptStore(path, replay=True)
        entry = store.get(CONFIG_KEY)
        if entry is None:
            raise TranscriptMissError(f"{path}: not a FINER transcript (no {CONFIG_KEY!r} entry)")
        config = entry["response"]
        unknown = set(config.get("stages", ())) - set(stages)
        if unknown:
            raise UsageError(f"{path}: recorded stages {sorted(unknown)} are not stages of this builder ({sorted(stages)})")
        spec = config["llm"]
        llm = LLMConfig(base_url=_REPLAY_URL, model=spec["model"], temperature=spec["temperature"],
                        max_tokens=spec["max_tokens"], seed=spec["seed"], api_key_env="")
        mllm = None
        if config.get("mllm") and config["mllm"]["kind"] == "openai-logprobs":
            mllm = LLMConfig(base_url=_REPLAY_URL, model=config["mllm"]["model"], api_key_env="",
                             temperature=config["mllm"]["temperature"], seed=config["mllm"]["seed"])
        chosen = {name: stages[name] for name in config["stages"]}
        return cls._assemble(store, config, prompts, chosen, llm=llm, mllm=mllm, seed=seed, transport=None, score=None)

    @classmethod
    def _assemble(cls, store: TranscriptStore, config: dict, prompts: PromptSet, stages: dict[str, type], *,
                  llm: LLMConfig, mllm: LLMConfig | None, seed: int, transport: Any, score: Any) -> LLMRun:
        client = ChatClient(llm, store, transport=transport)
        run = cls(store=store, config=config, prompts=prompts, client=client, seed=seed)
        run._clients.append(client)
        spec = config.get("mllm")
        if spec and spec["kind"] == "openai-logprobs":
            mclient = ChatClient(mllm, store, transport=transport)
            run._clients.append(mclient)
            run.discriminator = ChatLogprobsDiscriminator(mclient)
        elif spec and spec["kind"] == "hf-letters":
            run.discriminator = LettersDiscriminator(score, spec["model"], store)
            run._clients.append(run.discriminator)
        for name in sorted(stages):
            run.stages[name] = stages[name].from_run(run)
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

    def reports(self) -> dict[str, Any]:
        """What the stages report for the manifest (e.g. ``entropy_filter``: per-level counts)."""
        out: dict[str, Any] = {}
        for _, stage in sorted(self.stages.items()):
            if hasattr(stage, "report"):
                out.update(stage.report())
        return out

    def manifest(self, transcript_entries: int) -> dict[str, Any]:
        return {
            "model": self.config["llm"]["model"],
            "stages": self.config["stages"],
            "mllm": self.config.get("mllm"),
            "prompts": self.config["prompts"],
            "usage": self.usage(),
            **self.reports(),
            "transcript": {"path": "transcript.jsonl", "entries": transcript_entries},
        }

    def card_text(self) -> str:
        """The card's "Models" line: which model did what, filter statistics, usage."""
        labels = ", ".join(getattr(self.stages[s], "label", s) for s in sorted(self.stages))
        text = f"LLM `{self.config['llm']['model']}` ({labels})"
        if self.config.get("mllm"):
            text += f"; MLLM discriminator `{self.config['mllm']['model']}` ({self.config['mllm']['kind']})"
        for stage in self.stages.values():
            if hasattr(stage, "card_text"):
                text += stage.card_text()
        usage = self.usage()
        return text + (f"\n\n  Usage: {usage['requests']} requests, {usage['unique_prompts']} unique prompts, "
                       f"{usage['cache_hits']} cache hits, {usage['prompt_tokens']} prompt + "
                       f"{usage['completion_tokens']} completion tokens")

    def transcript_text(self) -> str:
        return (f"`transcript.jsonl` ({len(self.used_keys())} entries: every model answer this build used, "
                "keyed by sha256 of backend, model, prompt and parameters); "
                "`finer build ... --replay transcript.jsonl` rebuilds this folder byte for byte with no model access")
