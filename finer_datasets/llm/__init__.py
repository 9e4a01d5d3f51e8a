"""Model calls of FINER builds (imports httpx; not imported by ``import finer_datasets``).

    client.py       LLMConfig, ChatClient: OpenAI-compatible chat completions (retries, re-asks,
                    preflight, circuit breaker, total time per request), LLMAnswerError
    answers.py      json_parser: a chat completion's answer as JSON of a given shape
    sanitize.py     what of a server's answer may be shown (short, capped, never the API key)
    wire.py         the TLS context and a time-bounded GET shared by the clients
    transcript.py   TranscriptStore, request_key: content-addressed, crash-safe answers; replay
    prompts.py      PromptSet: versioned templates (a builder's prompts/ first, then the library's)
    entropy.py      Thresholds, entropy, ChatLogprobsDiscriminator, LettersDiscriminator (MLLM filter)
    stages.py       what every stage shares (gather with progress, ask_or_none)
    run.py          LLMRun: one build's set-up and stages (recorded in the transcript)
    verbatim.py     VerbatimGuard: was a phrase copied from a text (the guard against invention)

The stages themselves live with their concern: ``scene_graph.llm_negatives.LLMNegatives``,
``mcq.wh_writer.WhQuestionWriter``, and builder-specific ones in the builder's folder.
"""

from finer_datasets.llm.client import ChatClient, LLMAnswerError, LLMConfig, json_parser
from finer_datasets.llm.entropy import (
    ChatLogprobsDiscriminator,
    LettersDiscriminator,
    Thresholds,
    entropy,
)
from finer_datasets.llm.prompts import LIBRARY_PROMPTS, PromptSet
from finer_datasets.llm.run import LLMRun
from finer_datasets.llm.transcript import TranscriptStore, request_key
from finer_datasets.llm.verbatim import VerbatimGuard

__all__ = [
    "ChatClient", "LLMConfig", "LLMAnswerError", "json_parser", "ChatLogprobsDiscriminator", "LettersDiscriminator",
    "Thresholds", "entropy", "PromptSet", "LIBRARY_PROMPTS", "LLMRun", "TranscriptStore", "request_key", "VerbatimGuard",
]
