"""What a dataset builder declares; everything else is the core's job (:mod:`finer_datasets.core.build`).

A builder is one folder ``builders/<name>/`` holding ``builder.py`` (a :class:`DatasetBuilder`
subclass), ``VERSION``, ``RELEASE_NOTES.md``, ``prompts/`` (versioned prompt templates, if it uses
model stages), ``dummy_data/`` (a tiny source in the real layout, for the registry tests) and
``sample/`` (the bundled sample); its card template is ``hub_cards/<name>.md`` and its record
schema one of the repository's ``schemas/`` (a builder registered from another folder may keep
both beside its ``builder.py``). The class declares its
name, licence, record schema, splits and model stages, and implements three hooks:

* :meth:`DatasetBuilder.read_source` -- parse the source into units (usually one per image);
  raise :class:`~finer_datasets.errors.SourceError` on malformed input, report skips;
* :meth:`DatasetBuilder.prepare` -- batch work over all units before the first shard (model
  stages; a failing endpoint aborts here, before anything is written);
* :meth:`DatasetBuilder.make_sample` -- one unit -> one :class:`Sample` (an image and the record
  stored with it), a pure function of the unit, the prepared state and the seed.
"""

from __future__ import annotations

import re
import sys
from abc import ABC, abstractmethod
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

from finer_datasets.errors import StrictModeError

if TYPE_CHECKING:
    from finer_datasets.core.reader import ShardMember

__all__ = ["BuildReport", "BuildContext", "Sample", "DatasetBuilder", "image_key", "DEFAULT_MAX_SKIP_RATE",
           "labelled_version"]

#: default largest share of elements a build may skip for defects (not by policy) before it fails
DEFAULT_MAX_SKIP_RATE = 0.25
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
#: a PEP 440 local version label: lower-case letters and digits in dot-separated parts (``lab.1``)
_LABEL = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*$")


def labelled_version(version: str, label: str | None) -> str:
    """``2.0.0`` + ``lab.1`` -> ``2.0.0+lab.1`` (a PEP 440 local version: a user's own rebuild of
    2.0.0, ordered after it and never taken for an official release); no label -> ``version``."""
    if label is None:
        return version
    if not _LABEL.match(label) or len(label) > 64:
        from finer_datasets.errors import UsageError

        raise UsageError(f"--version-label {label!r}: use lower-case letters and digits in dot-separated parts, "
                         "e.g. lab.1 (a PEP 440 local version label)")
    return f"{version}+{label}"


def image_key(image_id: str) -> str:
    """The image id as used inside WebDataset keys: letters, digits and ``-`` only.

    ``_`` separates the parts of record ids and ``.`` would split a WebDataset key, so both (and
    anything else) become ``-``.
    """
    key = _KEY_UNSAFE.sub("-", image_id).strip("-")
    return key or "image"


@dataclass
class BuildReport:
    """Skipped elements (content that is valid but unusable), silent fixes, and the skip rate.

    With ``strict=True`` the first skip raises :class:`StrictModeError` instead. ``policy`` names
    the reasons that are skips by design (e.g. an image with fewer than k objects) and do not
    count towards :meth:`defect_rate`; every other reason does. The rate's denominator is the
    elements the builder counts with :meth:`consider` (e.g. every scene-graph element it uses)
    plus the defects found while reading the source (elements that never got that far; the core
    calls :meth:`end_of_read`). Files are recorded relative to ``root`` (the source folder).
    """

    strict: bool = False
    root: Path | None = None
    policy: frozenset[str] = frozenset()
    skips: list[dict[str, Any]] = field(default_factory=list)
    fixes: Counter[str] = field(default_factory=Counter)
    considered: int = 0
    read_defects: int = 0

    def consider(self, n: int = 1) -> None:
        self.considered += n

    def end_of_read(self) -> None:
        """Mark the end of reading the source: its defects join the rate's denominator."""
        self.read_defects = self.defects()

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

    def defects(self) -> int:
        return sum(1 for s in self.skips if s["reason"] not in self.policy)

    def defect_rate(self) -> float:
        """Skips for defects (every reason not in ``policy``) per element."""
        total = self.considered + self.read_defects
        return self.defects() / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"skips": self.skip_counts(), "fixes": dict(sorted(self.fixes.items())),
                "considered": self.considered + self.read_defects, "defects": self.defects(), "policy_reasons": sorted(self.policy),
                "skipped": self.skips}


@dataclass
class BuildContext:
    """What the hooks of one build share: the seed, the report, the model run, options, statistics."""

    builder: DatasetBuilder
    source: Path
    seed: int = 0
    report: BuildReport = field(default_factory=BuildReport)
    llm: Any = None  # finer_datasets.llm.LLMRun when model stages run
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # the builder's own accumulators


@dataclass(frozen=True)
class Sample:
    """One WebDataset sample: an image stored once and the record (the ``json`` member) about it.

    ``origin`` is ``(file, record)`` of the source entry, used to name the culprit when the image
    cannot be read or decoded. ``image`` is a file, or an image stored in a built folder
    (:class:`~finer_datasets.core.reader.ShardMember`, read like a file) when the source is one.
    """

    key: str
    split: str
    record: dict[str, Any]
    image: Path | ShardMember
    origin: tuple[Path, object]


class DatasetBuilder(ABC):
    """A FINER dataset; subclasses live in ``builders/<name>/builder.py``."""

    #: registry name (``finer build <name>``), lower case with underscores
    name: ClassVar[str]
    pretty_name: ClassVar[str]
    #: licence id for the card's YAML and its human-readable text for the card
    license: ClassVar[str]
    license_text: ClassVar[str]
    #: JSON Schema file of a sample's ``json`` member (card features are derived from it)
    record_schema: ClassVar[Path]
    splits: ClassVar[tuple[str, ...]] = ("test",)
    task_categories: ClassVar[tuple[str, ...]] = ("visual-question-answering",)
    tags: ClassVar[tuple[str, ...]] = ("hallucination", "multimodal", "webdataset")
    #: skip reasons that are skips by design and do not count towards the skip rate
    policy_skips: ClassVar[frozenset[str]] = frozenset()
    #: model stages this builder can run: stage name -> class (see finer_datasets.llm)
    llm_stages: ClassVar[dict[str, type]] = {}
    #: default entropy-filter thresholds per level (object, attribute, relation), if it filters
    entropy_thresholds: ClassVar[dict[str, float] | None] = None
    #: whether a build needs a model (``--llm-*`` or ``--replay``): e.g. scene graphs extracted by an LLM
    requires_llm: ClassVar[bool] = False

    # -- the builder's folder ------------------------------------------------------------------

    @classmethod
    def folder(cls) -> Path:
        """The builder's folder: where ``builder.py`` and ``VERSION`` lie (for a subclass defined
        elsewhere, e.g. in a test, the folder of the nearest base class that has one)."""
        for klass in cls.__mro__:
            module = sys.modules.get(klass.__module__)
            folder = Path(getattr(module, "__file__", "") or ".").resolve().parent
            if (folder / "VERSION").is_file():
                return folder
        raise FileNotFoundError(f"{cls.__name__}: no builder folder with a VERSION file")

    @property
    def version(self) -> str:
        text = (self.folder() / "VERSION").read_text("utf-8").strip()
        if not _VERSION.match(text):
            raise ValueError(f"{self.folder() / 'VERSION'}: {text!r} is not a version like 1.2.3")
        return text

    @property
    def release_notes(self) -> str:
        return (self.folder() / "RELEASE_NOTES.md").read_text("utf-8")

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

    def card_path(self) -> Path:
        """The card template: ``hub_cards/<name>.md`` (the repository's builders), else ``card.md`` in
        the builder's own folder (a builder registered from elsewhere)."""
        from finer_datasets.core.validation import shipped_folder

        shipped = shipped_folder("hub_cards") / f"{self.name}.md"
        return shipped if shipped.is_file() else self.folder() / "card.md"

    @property
    def card_template(self) -> str:
        return self.card_path().read_text("utf-8")

    def prompts_dir(self) -> Path:
        return self.folder() / "prompts"

    def sample_dir(self) -> Path:
        """The bundled sample in the real source layout."""
        return self.folder() / "sample"

    def dummy_data_dir(self) -> Path:
        return self.folder() / "dummy_data"

    # -- options -------------------------------------------------------------------------------

    def add_arguments(self, group: Any) -> None:
        """Add this builder's own command-line options to an ``argparse`` group (default: none)."""

    def options_from(self, args: Any) -> dict[str, Any]:
        """The builder's options from parsed arguments (keys as :func:`build` takes them)."""
        return {}

    def recorded_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options as recorded in the manifest and card: JSON values, no local paths."""
        return {}

    def protected_paths(self, options: dict[str, Any]) -> list[Path]:
        """Input files named by options, which ``--out`` must never contain."""
        return []

    def variant(self, options: dict[str, Any]) -> DatasetBuilder:
        """The builder that makes a build with these options: ``self`` (default), or another one of
        the same dataset (e.g. an import of released items instead of a build from the source)."""
        return self

    def source_from_options(self, options: dict[str, Any]) -> Path | None:
        """The source folder named by the builder's own options (e.g. ``--from-release TABLES``),
        which then takes the place of ``--source``; ``None`` (default) when they name none."""
        return None

    # -- hooks ---------------------------------------------------------------------------------

    @abstractmethod
    def source_files(self, source: Path) -> list[tuple[str, list[Path]]]:
        """Named groups of source files to fingerprint in the manifest."""

    @abstractmethod
    def read_source(self, source: Path, ctx: BuildContext) -> list[Any]:
        """Parse the source into units; raise :class:`SourceError` on malformed input."""

    def prepare(self, units: list[Any], ctx: BuildContext) -> None:
        """Batch work over all units before the first shard (model stages). Default: nothing."""

    @abstractmethod
    def make_sample(self, unit: Any, ctx: BuildContext) -> Sample | None:
        """The sample of one unit (``None``: nothing usable, already reported as skips)."""

    def counts(self, ctx: BuildContext) -> dict[str, Any]:
        """The builder's statistics for the manifest's ``counts`` (JSON values)."""
        return {}

    def provenance(self, ctx: BuildContext) -> dict[str, Any]:
        """Builder-specific provenance for the manifest (e.g. negatives provider + fingerprint)."""
        return {}

    def card_values(self, ctx: BuildContext, manifest: dict[str, Any]) -> dict[str, Any]:
        """Values for ``$placeholders`` of the card template beyond the core's (see core.build)."""
        return {}

    @contextmanager
    def test_context(self, source: Path) -> Iterator[dict[str, Any]]:
        """What a test build of ``source`` (the dummy data, the sample) needs running beside it,
        e.g. a local image server; yields the builder options to build with. Default: nothing."""
        yield {}

    def scripted_handlers(self) -> list[Any]:
        """How the scripted stand-in model answers this builder's own prompts (for offline tests
        and recording the sample transcript): ``(prompt text, rng) -> answer | None`` callables."""
        return []

    # -- building in parts (``--part I/N`` on several machines, then :mod:`finer_datasets.core.merge`) --

    def part_of(self, manifest: dict[str, Any]) -> tuple[int, int] | None:
        """Which part ``(i, n)`` (1-based) the build described by ``manifest`` is; ``None`` for a
        whole build. Default: the builder cannot be built in parts."""
        return None

    def merge_options(self, parts: list[Path], options: dict[str, Any], scratch: Path) -> dict[str, Any]:
        """The options of a whole build that takes what the verified part builds ``parts`` fetched
        (e.g. their images, unpacked under the empty folder ``scratch``) instead of fetching it
        again; with the parts' transcripts replayed it equals a one-machine build byte for byte.
        Default: the builder cannot be built in parts."""
        from finer_datasets.errors import UsageError

        raise UsageError(f"{self.pretty_name} cannot be built in parts (its builder has no merge_options)")
