"""LLM and MLLM stages of FINER builds (imports httpx; not imported by ``import finer_datasets``).

    LLMConfig, ChatClient            an OpenAI-compatible chat-completions client (retries, re-asks)
    TranscriptStore, request_key     content-addressed, crash-safe answers; replay
    LLMNegatives, LLMAttributeRewriter, WhQuestionWriter    the build stages
    Thresholds, ChatLogprobsDiscriminator, LettersDiscriminator, entropy    the MLLM entropy filter
    LLMRun                           one build's set-up (recorded in the transcript)
    ScriptedLLM, ScriptedServer      a deterministic stand-in model for tests and the sample transcript
"""

from .client import ChatClient, LLMConfig, json_parser
from .entropy import (
    COMPRE_CAP_THRESHOLDS,
    DOCCI_THRESHOLDS,
    ChatLogprobsDiscriminator,
    LettersDiscriminator,
    Thresholds,
    entropy,
)
from .prompts import PROMPTS, prompts_fingerprint, render
from .run import LLMRun
from .scripted import ScriptedLLM, ScriptedServer
from .stages import LLMAttributeRewriter, LLMNegatives, WhQuestionWriter
from .transcript import TranscriptStore, request_key

__all__ = [
    "ChatClient", "LLMConfig", "json_parser", "COMPRE_CAP_THRESHOLDS", "DOCCI_THRESHOLDS", "ChatLogprobsDiscriminator",
    "LettersDiscriminator", "Thresholds", "entropy", "PROMPTS", "prompts_fingerprint", "render", "LLMRun",
    "ScriptedLLM", "ScriptedServer", "LLMAttributeRewriter", "LLMNegatives", "WhQuestionWriter", "TranscriptStore",
    "request_key",
]
