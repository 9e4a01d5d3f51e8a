"""The evaluation prompts: how one FINER question is put to a model.

Two named templates; every report and ``run.json`` records which one produced the answers, because
numbers made with different prompts are not comparable:

* ``official`` (the default) -- the prompt of FINER's released evaluation script, the one behind
  the paper's Table 1: the line ``Select the best answer for the multiple-choice question.``, a
  blank line, the question, a blank line, one ``(A) text`` line per option, a blank line and
  ``Please answer with a single capital letter (A, B, C, D, or E):``; greedy decoding of at most
  2 new tokens.
* ``appendix-d`` -- the protocol as the paper's Appendix D words it: the question, ``A. text``
  lines and the instruction ``Please answer with a single capital letter (A, B, C, D, or E).``;
  at most 3 new tokens. This package's default before the official script was matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from finer_datasets.constants import LETTERS
from finer_datasets.errors import UsageError
from finer_datasets.mcq.construct import prompt_text

__all__ = ["PromptTemplate", "PROMPTS", "DEFAULT_PROMPT", "get_prompt", "official_prompt", "OFFICIAL_HEADER",
           "OFFICIAL_INSTRUCTION"]

OFFICIAL_HEADER = "Select the best answer for the multiple-choice question."
OFFICIAL_INSTRUCTION = "Please answer with a single capital letter (A, B, C, D, or E):"


def official_prompt(question: str, options: Sequence[str]) -> str:
    """The text FINER's released evaluation script shows a model (byte for byte)."""
    lines = [OFFICIAL_HEADER, "", question, ""]
    lines += [f"({letter}) {text}" for letter, text in zip(LETTERS, options)]
    lines += ["", OFFICIAL_INSTRUCTION]
    return "\n".join(lines)


@dataclass(frozen=True)
class PromptTemplate:
    """A named way to put a question: the text and the generation budget that goes with it."""

    name: str
    description: str
    max_new_tokens: int
    render: Callable[[str, Sequence[str]], str]

    def format(self, question: str, options: Sequence[str]) -> str:
        """The prompt text of ``question`` with its five ``options`` in A-E order."""
        return self.render(question, list(options))

    def describe(self) -> dict[str, object]:
        """What reports record about the template."""
        return {"name": self.name, "max_new_tokens": self.max_new_tokens, "description": self.description}


PROMPTS: dict[str, PromptTemplate] = {
    "official": PromptTemplate(
        "official", "FINER's released evaluation script: header, question, (A)-(E) option lines, instruction "
        "ending in a colon; the paper's Table 1 protocol", 2, official_prompt),
    "appendix-d": PromptTemplate(
        "appendix-d", "the paper's Appendix D wording: question, 'A. text' option lines, instruction ending in "
        "a period", 3, lambda question, options: prompt_text(question, options)),
}
DEFAULT_PROMPT = "official"


def get_prompt(name: str | None = None, *, option: str = "prompt") -> PromptTemplate:
    """The template called ``name`` (``None``: the default); an unknown name is a
    :class:`~finer_datasets.errors.UsageError` naming the option and the valid names."""
    key = DEFAULT_PROMPT if name is None else str(name).strip().lower()
    if key not in PROMPTS:
        raise UsageError(f"--{option} {name!r} is not a prompt template; use one of {', '.join(PROMPTS)}")
    return PROMPTS[key]
