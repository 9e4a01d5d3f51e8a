"""Reading a chat completion: ``json_parser`` (the answer as JSON of a given shape) and the
parts of a response a transcript keeps (:func:`essentials`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jsonschema_rs

__all__ = ["Parsed", "essentials", "json_parser"]

# parse(response_json) -> (value, None) when usable, (None, "what is wrong") otherwise
Parsed = tuple[Any, "str | None"]

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@lru_cache(maxsize=256)
def _compiled_schema(canonical: str) -> Any:
    return jsonschema_rs.validator_for(json.loads(canonical))


def json_parser(schema: dict[str, Any], check: Callable[[Any], str | None] | None = None) -> Callable[[dict], Parsed]:
    """Parse ``choices[0].message.content`` as JSON matching ``schema`` (and ``check``, if given).

    Stages make a parser per request; the compiled schema is shared (cached by its canonical JSON).
    """
    compiled = _compiled_schema(json.dumps(schema, sort_keys=True))

    def parse(response: dict) -> Parsed:
        try:
            content = response["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return None, "the response has no choices[0].message.content"
        text = content.strip()
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, f"not valid JSON ({exc.msg})"
        errors = list(compiled.iter_errors(value))
        if errors:
            return None, f"wrong shape: {errors[0].message}"
        problem = check(value) if check else None
        return (None, problem) if problem else (value, None)

    return parse


def essentials(response: dict) -> dict:
    """What a parser reads from a chat completion (kept in the transcript; ids and timings dropped)."""
    choice = (response.get("choices") or [{}])[0]
    kept: dict[str, Any] = {"message": {"content": (choice.get("message") or {}).get("content")}}
    if choice.get("logprobs") is not None:
        kept["logprobs"] = choice["logprobs"]
    return {"choices": [kept]}
