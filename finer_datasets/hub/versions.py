"""Dataset versions as releases order them: ``MAJOR.MINOR.PATCH`` with an optional PEP 440 local label.

A builder's ``VERSION`` is ``2.0.0``; a lab's own build of it may carry a local label,
``2.0.0+lab.1`` (tag ``v2.0.0+lab.1``). Versions are ordered as PEP 440 orders them: by the release
numbers, then a version without a label before the same release with one, then the label segment by
segment (split at ``.``, ``-`` or ``_``): a numeric segment compares as a number and sorts above a
segment with letters, which compare case-insensitively, and a label that extends another sorts
after it (``+lab`` < ``+lab.1`` < ``+lab.2`` < ``+lab.10``). Only this subset of PEP 440 is a dataset
version (no pre-, post- or dev-releases, no epochs); anything else is refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

__all__ = ["Version", "parse_version", "next_versions", "VERSION_PATTERN"]

#: a dataset version: three release numbers and an optional local label
VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\+([a-z0-9]+(?:[._-][a-z0-9]+)*))?$", re.IGNORECASE)


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed dataset version; ``str()`` gives it back normalised (label lower-cased, ``.`` separators)."""

    release: tuple[int, int, int]
    local: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = ".".join(map(str, self.release))
        return f"{text}+{'.'.join(self.local)}" if self.local else text

    @property
    def public(self) -> str:
        """The version without its local label."""
        return ".".join(map(str, self.release))

    def _key(self) -> tuple:
        segments = tuple((1, int(s), "") if s.isdigit() else (0, 0, s) for s in self.local)
        return self.release, bool(self.local), segments

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def parse_version(text: str) -> Version | None:
    """``"2.0.0+Lab-1"`` -> ``Version((2, 0, 0), ("lab", "1"))``; ``None`` for anything else."""
    match = VERSION_PATTERN.match(str(text).strip())
    if not match:
        return None
    release = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    local = tuple(re.split(r"[._-]", match.group(4).lower())) if match.group(4) else ()
    return Version(release, local)


def next_versions(version: Version) -> tuple[str, str, str]:
    """The patch, minor and major bump of ``version``: ``2.1.0`` -> ``2.1.1``, ``2.2.0``, ``3.0.0``."""
    major, minor, patch = version.release
    return f"{major}.{minor}.{patch + 1}", f"{major}.{minor + 1}.0", f"{major + 1}.0.0"
