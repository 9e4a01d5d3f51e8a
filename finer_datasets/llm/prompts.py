"""Versioned prompt templates rendered into chat messages.

A template is a file ``<task>.v<N>.md`` with ``### system`` and ``### user`` sections and
``$placeholders``. A :class:`PromptSet` looks for each task in its folders in order (a builder's
``prompts/`` first, then the library's templates for the generic stages) and uses the highest
version found in the first folder that has the task. The rendered messages are part of the
transcript key, so a new wording (a new version file) never reuses answers given to the old one.
A build records :meth:`PromptSet.fingerprint` of only the tasks its stages use.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any, Iterable

from finer_datasets.errors import UsageError

__all__ = ["PromptSet", "LIBRARY_PROMPTS", "render_template"]

#: templates of the library's generic stages (negatives, replacements, Wh questions)
LIBRARY_PROMPTS = Path(__file__).parent / "prompts"
_VERSIONED = re.compile(r"^(?P<task>.+)\.v(?P<n>[0-9]+)\.md$")


@lru_cache(maxsize=None)
def _sections(path: str) -> tuple[tuple[str, Template], ...]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in Path(path).read_text("utf-8").splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return tuple((role, Template("\n".join(lines).strip())) for role, lines in sections.items())


def render_template(path: Path, **values: Any) -> list[dict[str, str]]:
    """Chat messages from one template file with ``values`` filled in (lists are shown as JSON)."""
    shown = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, tuple)) else str(v) for k, v in values.items()}
    return [{"role": role, "content": tmpl.substitute(shown)} for role, tmpl in _sections(str(path))]


class PromptSet:
    """Task name -> template file, resolved over ``folders`` (earlier folders win)."""

    def __init__(self, *folders: Path):
        self.folders = tuple(Path(f) for f in folders)
        self._paths: dict[str, Path] = {}

    @classmethod
    def for_builder(cls, prompts_dir: Path) -> PromptSet:
        return cls(prompts_dir, LIBRARY_PROMPTS)

    def path(self, task: str) -> Path:
        """The template file of ``task`` (highest version in the first folder that has it)."""
        if task not in self._paths:
            for folder in self.folders:
                versions = [(int(m["n"]), p) for p in (folder.glob(f"{task}.v*.md") if folder.is_dir() else ())
                            if (m := _VERSIONED.match(p.name)) and m["task"] == task]
                if versions:
                    self._paths[task] = max(versions)[1]
                    break
            else:
                raise UsageError(f"no prompt template for task {task!r} in {', '.join(map(str, self.folders))}")
        return self._paths[task]

    def render(self, task: str, **values: Any) -> list[dict[str, str]]:
        return render_template(self.path(task), **values)

    def fingerprint(self, tasks: Iterable[str]) -> str:
        """sha256 over the template files of ``tasks`` (names and bytes, sorted by task)."""
        digest = hashlib.sha256()
        for task in sorted(set(tasks)):
            path = self.path(task)
            digest.update(path.name.removesuffix(".md").encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()
