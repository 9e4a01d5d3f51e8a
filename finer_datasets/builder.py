"""What a dataset builder provides, and the build report every builder writes skips to."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ._errors import StrictModeError
from .pairs import KLimits
from .scene_graph import SceneGraph

__all__ = ["BuildReport", "SourceImage", "DatasetBuilder", "image_key"]

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def image_key(image_id: str) -> str:
    """The image id as used inside WebDataset keys: letters, digits and ``-`` only.

    ``_`` separates the parts of a pair id and ``.`` would split a WebDataset key, so both (and
    anything else) become ``-``. With no ``_`` in image keys, sorting images by ``key + "_"``
    sorts their pair ids too.
    """
    key = _KEY_UNSAFE.sub("-", image_id).strip("-")
    return key or "image"


@dataclass
class BuildReport:
    """Skipped elements (content that is valid but unusable) and silent fixes.

    With ``strict=True`` the first skip raises :class:`StrictModeError` instead. Files are
    recorded relative to ``root`` (the source folder) so that reports do not depend on where the
    source lies.
    """

    strict: bool = False
    root: Path | None = None
    skips: list[dict[str, Any]] = field(default_factory=list)
    fixes: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, *, path: object, record: object, field: str | None = None, detail: str = "") -> None:
        if self.strict:
            raise StrictModeError(f"{reason}: {detail} (--strict)", path=path, record=record, field=field)
        file = Path(str(path))
        if self.root is not None and file.is_relative_to(self.root):
            file = file.relative_to(self.root)
        self.skips.append(
            {"reason": reason, "file": file.as_posix(), "record": str(record), "field": field or "", "detail": detail}
        )

    def fix(self, reason: str) -> None:
        self.fixes[reason] += 1

    def skip_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s["reason"] for s in self.skips).items()))


@dataclass(frozen=True)
class SourceImage:
    """One image of a source, with its positive scene graph."""

    image_id: str
    key: str
    path: Path
    graph: SceneGraph
    annotation_file: Path


class DatasetBuilder(ABC):
    """A FINER dataset: reads its source into scene graphs; the shared pipeline does the rest.

    Subclasses live in ``builders/<name>/`` next to ``VERSION``, ``RELEASE_NOTES.md``,
    ``dummy_data/`` and ``sample/``.
    """

    name: str
    resource_package: str  # the package holding VERSION, RELEASE_NOTES.md, sample/, dummy_data/
    pretty_name: str
    dataset_field: str
    license: str
    card_template: str
    limits: KLimits = KLimits()

    @property
    def folder(self) -> Any:
        """The builder's package folder (a ``importlib.resources`` traversable)."""
        return resources.files(self.resource_package)

    @property
    def version(self) -> str:
        return self.folder.joinpath("VERSION").read_text("utf-8").strip()

    @property
    def release_notes(self) -> str:
        return self.folder.joinpath("RELEASE_NOTES.md").read_text("utf-8")

    @property
    def version_notes(self) -> str:
        """The ``## <version>`` section of the release notes (what the version's tag says)."""
        section, current = [], None
        for line in self.release_notes.splitlines():
            if line.startswith("## "):
                current = line[3:].strip()
                continue
            if current == self.version:
                section.append(line)
        text = "\n".join(section).strip()
        return f"{self.pretty_name} {self.version}\n\n{text}" if text else f"{self.pretty_name} {self.version}"

    def sample_dir(self) -> Path:
        """The bundled sample in the real source layout."""
        return Path(str(self.folder.joinpath("sample")))

    def dummy_data_dir(self) -> Path:
        return Path(str(self.folder.joinpath("dummy_data")))

    @abstractmethod
    def source_files(self, source: Path) -> list[tuple[str, list[Path]]]:
        """Named groups of source files to fingerprint in the manifest."""

    @abstractmethod
    def read_source(self, source: Path, report: BuildReport, *, rewriter: Any = None) -> list[SourceImage]:
        """Parse the source; raise :class:`SourceError` on malformed input, report skips.

        ``rewriter`` (e.g. ``llm.LLMAttributeRewriter``: ``prepare(items)`` + ``__call__``) replaces
        the builder's own attribute rewriting for this call.
        """
