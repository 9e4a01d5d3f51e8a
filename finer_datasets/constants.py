"""The FINER vocabulary every layer shares, defined once.

``SETTINGS`` are the four benchmark settings in the paper's order; ``SETTING_ALIASES`` maps the
names of FINER's official release (``multi_object`` ...) and hyphenated spellings to ours, so a
setting can be named either way wherever one is named (:func:`canonical_setting`).
"""

from __future__ import annotations

from typing import Iterable

from finer_datasets.errors import UsageError

__all__ = ["LETTERS", "SETTINGS", "SETTING_ALIASES", "NEGATIVES_PER_ELEMENT", "canonical_setting",
           "canonical_settings", "KINDS", "record_kind", "require_kind", "TRANSCRIPT_CONFIG_KEY"]

#: option letters of every FINER multiple-choice question, in display order
LETTERS = "ABCDE"
#: the benchmark settings (paper, section 2.2), in the order of Table 1
SETTINGS = ("multi_obj", "multi_attr", "multi_rel", "wh")
#: negatives per scene-graph element (paper, section B.3)
NEGATIVES_PER_ELEMENT = 4
#: the key of a transcript's model set-up entry (model, parameters, stages; not a model answer)
TRANSCRIPT_CONFIG_KEY = "config"

SETTING_ALIASES = {
    "multi_object": "multi_obj",
    "multi_attribute": "multi_attr",
    "multi_relation": "multi_rel",
    "multi-obj": "multi_obj",
    "multi-attr": "multi_attr",
    "multi-rel": "multi_rel",
    "multi-object": "multi_obj",
    "multi-attribute": "multi_attr",
    "multi-relation": "multi_rel",
    "what": "wh",
}


def canonical_setting(name: str, *, option: str = "setting") -> str:
    """``multi_object`` / ``multi-obj`` / ``multi_obj`` -> ``multi_obj``; anything else is a
    :class:`~finer_datasets.errors.UsageError` naming the option and the valid names."""
    key = str(name).strip().lower()
    key = SETTING_ALIASES.get(key, key)
    if key not in SETTINGS:
        official = ", ".join(a for a in SETTING_ALIASES if "_" in a and a.startswith("multi"))
        raise UsageError(f"--{option} {name!r} is not a FINER setting; use one of {', '.join(SETTINGS)} "
                         f"(or the official names {official})")
    return key


def canonical_settings(names: Iterable[str] | str | None, *, option: str = "setting") -> tuple[str, ...]:
    """Every name through :func:`canonical_setting`, duplicates dropped, in ``SETTINGS`` order;
    ``None`` (or empty) means all settings."""
    if names is None:
        return SETTINGS
    if isinstance(names, str):
        names = [names]
    chosen = {canonical_setting(n, option=option) for n in names}
    return tuple(s for s in SETTINGS if s in chosen) or SETTINGS


#: what a FINER dataset's records hold -> the name people know it by and the ``load_finer`` views it has.
#: A benchmark record (FINER-CompreCap, FINER-DOCCI) holds MCQ ``pairs`` (a 1.x record is one pair:
#: ``pair_id`` + ``positive``); a preference record (FINER-Tuning) holds ``tuples``.
KINDS = {
    "benchmark": {"fields": ("pairs", "pair_id"), "what": "a FINER benchmark of MCQ pairs",
                  "views": ("images", "pairs", "questions", "positions")},
    "preference": {"fields": ("tuples",), "what": "a FINER-Tuning preference dataset (DPO tuples)",
                   "views": ("images", "trl", "sft")},
}


def record_kind(fields: Iterable[str] | None) -> str | None:
    """``benchmark`` / ``preference`` from the field names of one record (a record dict, or the keys of
    the ``json`` feature); ``None`` when neither fits."""
    names = set(fields or ())
    return next((kind for kind, spec in KINDS.items() if names & set(spec["fields"])), None)


def require_kind(fields: Iterable[str] | None, kind: str, *, subject: str, action: str) -> None:
    """A :class:`~finer_datasets.errors.UsageError` in one line unless the record fields are of ``kind``:
    it names what ``subject`` is, the views it has, and what ``action`` needs."""
    found = record_kind(fields)
    if found == kind:
        return
    wanted = KINDS[kind]
    if found is None:
        what = "not a FINER dataset this version knows (its records hold neither MCQ pairs nor preference tuples)"
    else:
        what = f"{KINDS[found]['what']} (views: {', '.join(KINDS[found]['views'])})"
    raise UsageError(f"{subject} is {what}; {action} needs {wanted['what']} (views: {', '.join(wanted['views'])})")
