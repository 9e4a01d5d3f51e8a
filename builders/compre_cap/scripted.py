"""How the scripted stand-in model (``finer_datasets.testing.scripted``) answers this builder's own
prompt: the rule-based rewriter of :mod:`.parsing`, so the LLM path can be tested offline."""

from __future__ import annotations

import random
import re
from typing import Any

from finer_datasets.scene_graph.lexicon import default_lexicon

from .parsing import rewrite_attribute

__all__ = ["answer"]


def answer(text: str, rng: random.Random) -> dict[str, Any] | None:
    """The answer to a ``rewrite_attribute`` prompt, or ``None`` for any other prompt."""
    if "Rewrite this annotation sentence" not in text:
        return None
    name = re.search(r"sentence about the (.+?) into", text).group(1)
    sentence = re.search(r'Sentence: "(.*)"', text).group(1)
    return {"phrases": rewrite_attribute(sentence, name, default_lexicon()) or []}
