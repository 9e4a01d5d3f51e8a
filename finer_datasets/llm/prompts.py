"""Versioned prompt templates (``finer_datasets/prompts/<name>.v<N>.md``) rendered into chat messages.

A template file has ``### system`` and ``### user`` sections with ``$placeholders``. The rendered
messages are part of the transcript key, so editing a template (or moving to a new version)
never reuses answers given to the old wording.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any

__all__ = ["PROMPTS", "render", "prompts_fingerprint"]

# task -> template file in use
PROMPTS = {
    "negatives.object": "negatives.object.v1",
    "negatives.attribute": "negatives.attribute.v1",
    "negatives.relation": "negatives.relation.v1",
    "negatives.replace": "negatives.replace.v1",
    "rewrite_attribute": "rewrite_attribute.v1",
    "wh_question": "wh_question.v1",
}


@lru_cache(maxsize=None)
def _template(name: str) -> dict[str, Template]:
    text = resources.files("finer_datasets.prompts").joinpath(f"{name}.md").read_text("utf-8")
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {role: Template("\n".join(lines).strip()) for role, lines in sections.items()}


def render(task: str, **values: Any) -> list[dict[str, str]]:
    """Chat messages of ``task`` with ``values`` filled in (lists are shown as JSON)."""
    shown = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, tuple)) else str(v) for k, v in values.items()}
    return [{"role": role, "content": tmpl.substitute(shown)} for role, tmpl in _template(PROMPTS[task]).items()]


def prompts_fingerprint() -> str:
    """sha256 over the template files in use (recorded in the manifest)."""
    digest = hashlib.sha256()
    for task in sorted(PROMPTS):
        name = PROMPTS[task]
        digest.update(name.encode())
        digest.update(resources.files("finer_datasets.prompts").joinpath(f"{name}.md").read_bytes())
    return digest.hexdigest()
