"""``finer diff A B``: what changed between two versions of a dataset.

A side is a dataset folder, a release repository at a revision (``REPO_DIR@v2.0.0``, read with
``git archive`` into a temporary folder: the repository's working tree, index and branches are
never touched) or a Hub id at a revision (``finer/compre_cap@v2.0.0``). Each side is verified
against its manifest, then summarised from its records by :func:`snapshot` and compared by
:func:`diff` -- both pure -- into a JSON-ready dict that :func:`render` prints:

* dataset, version, layout and manifest digest of each side, and whether the content is identical;
* counts per setting (MCQ pairs of a benchmark) or per subset (selected tuples of FINER-Tuning);
* pairs (tuples) added, removed and changed by id -- changed means the same id with different
  content -- with the fields that changed (dotted paths such as ``positive.options``) and a few
  examples;
* whether question ids are stable: every question id on both sides has the same question text
  and the same options in the same order (a reordered option list changes the right letter);
* bytes per file group: ``shards`` (``data/*.tar``), ``card`` (``README.md``), ``other``.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from finer_datasets.constants import SETTINGS, record_kind
from finer_datasets.core.manifest import MANIFEST_NAME, sha256_file, verify
from finer_datasets.errors import UsageError, VerificationError
from finer_datasets.hub.release import export_revision, is_git_repo
from finer_datasets.hub.resolve import HUB_ID, ResolvedDataset, resolve_dataset
from finer_datasets.mcq.records import POLARITIES, pair_rows
from finer_datasets.preference.records import selected_tuples

__all__ = ["Snapshot", "snapshot", "snapshot_of", "diff", "render", "open_side", "open_revision", "diff_specs",
           "FILE_GROUPS"]

FILE_GROUPS = ("shards", "card", "other")
_UNITS = {"benchmark": ("pairs", "setting"), "preference": ("selected tuples", "subset")}
_EXAMPLES = 3
_SHOWN = 60


@dataclass
class Snapshot:
    """One side of a diff: what its manifest says, and its pairs (or tuples) by id."""

    info: dict[str, Any]
    kind: str | None
    items: dict[str, str] = field(default_factory=dict)  # id -> canonical JSON of the pair / tuple
    counts: dict[str, int] = field(default_factory=dict)  # setting (subset) -> pairs (selected tuples)
    questions: dict[str, tuple[str, tuple[str, ...] | None]] = field(default_factory=dict)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (sha256, size)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _units(record: Mapping[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(id, group, content)`` of every pair (benchmark) or selected tuple (FINER-Tuning) of a record."""
    if kind == "benchmark":
        for pair in pair_rows(record):
            yield pair["pair_id"], pair["setting"], pair
    else:
        for t in selected_tuples(dict(record)):
            yield t["id"], t["type"], {**t, "image_id": record.get("image_id")}


def _questions(content: Mapping[str, Any], kind: str) -> Iterator[tuple[str, str, tuple[str, ...] | None]]:
    if kind == "benchmark":
        for polarity, _ in POLARITIES:
            q = content[polarity]
            yield q["question_id"], q["question"], tuple(q["options"])
    else:
        yield content["id"], content["question"], None


def snapshot(info: Mapping[str, Any], records: Iterable[Mapping[str, Any]],
             files: Mapping[str, tuple[str, int]]) -> Snapshot:
    """A side from its provenance ``info``, its records and its files (path -> (sha256, size))."""
    side = Snapshot(info=dict(info), kind=None, files=dict(files))
    for number, record in enumerate(records):
        kind = record_kind(record)
        if kind is None or (side.kind is not None and kind != side.kind):
            raise UsageError(f"{info.get('source')}: record {number} holds "
                             f"{'neither MCQ pairs nor preference tuples' if kind is None else 'another kind of data'}"
                             " than the dataset's first record")
        side.kind = kind
        for uid, group, content in _units(record, kind):
            side.items[uid] = _canonical(content)
            side.counts[group] = side.counts.get(group, 0) + 1
            for qid, text, options in _questions(content, kind):
                side.questions[qid] = (text, options)
    return side


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _changed_fields(old: str, new: str) -> dict[str, tuple[Any, Any]]:
    a, b = _flat(json.loads(old)), _flat(json.loads(new))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _group_order(groups: Iterable[str]) -> list[str]:
    return sorted(set(groups), key=lambda g: (SETTINGS.index(g) if g in SETTINGS else len(SETTINGS), g))


def _files_group(path: str) -> str:
    if path.startswith("data/") and path.endswith(".tar"):
        return "shards"
    return "card" if path == "README.md" else "other"


def _bytes(files: Mapping[str, tuple[str, int]]) -> dict[str, dict[str, int]]:
    out = {g: {"files": 0, "bytes": 0} for g in FILE_GROUPS}
    for path, (_, size) in files.items():
        out[_files_group(path)]["files"] += 1
        out[_files_group(path)]["bytes"] += size
    return out


def _question_stability(old: Snapshot, new: Snapshot, examples: int) -> dict[str, Any]:
    common = sorted(set(old.questions) & set(new.questions))
    tally = {"question text": 0, "option text": 0, "option order": 0}
    shown = []
    for qid in common:
        (text_a, opts_a), (text_b, opts_b) = old.questions[qid], new.questions[qid]
        if text_a != text_b:
            what = "question text"
        elif opts_a == opts_b:
            continue
        else:
            what = "option order" if sorted(opts_a or ()) == sorted(opts_b or ()) else "option text"
        tally[what] += 1
        if len(shown) < examples:
            shown.append({"question_id": qid, "what": what,
                          "old": text_a if what == "question text" else list(opts_a or ()),
                          "new": text_b if what == "question text" else list(opts_b or ())})
    unstable = sum(tally.values())
    return {"common": len(common), "stable": unstable == 0, "unstable": unstable, "by_cause": tally,
            "examples": shown}


def diff(old: Snapshot | None, new: Snapshot, *, examples: int = _EXAMPLES) -> dict[str, Any]:
    """Compare two snapshots (``old`` ``None``: a first release, everything is added); JSON-ready."""
    before = old or Snapshot(info={}, kind=new.kind)
    added = sorted(set(new.items) - set(before.items))
    removed = sorted(set(before.items) - set(new.items))
    fields: dict[str, int] = {}
    changed, changed_examples = 0, []
    for uid in sorted(set(before.items) & set(new.items)):
        if before.items[uid] == new.items[uid]:
            continue
        changed += 1
        delta = _changed_fields(before.items[uid], new.items[uid])
        for name in delta:
            fields[name] = fields.get(name, 0) + 1
        if len(changed_examples) < examples:
            changed_examples.append({"id": uid, "fields": {k: {"old": a, "new": b} for k, (a, b) in delta.items()}})
    groups = _group_order([*before.counts, *new.counts])
    kinds = {k for k in (before.kind, new.kind) if k}
    unit, by = _UNITS[new.kind or before.kind or "benchmark"]
    old_bytes, new_bytes = _bytes(before.files), _bytes(new.files)
    files_changed = sorted(p for p in set(before.files) | set(new.files) if before.files.get(p) != new.files.get(p))
    return {
        "old": old.info if old else None,
        "new": new.info,
        "kinds": {"old": before.kind if old else None, "new": new.kind},
        "same_dataset": old is None or old.info.get("dataset") == new.info.get("dataset"),
        "identical": old is not None and not files_changed,
        "unit": unit,
        "by": by,
        "counts": {g: {"old": before.counts.get(g, 0), "new": new.counts.get(g, 0)} for g in groups},
        "total": {"old": len(before.items), "new": len(new.items)},
        "items": {"added": len(added), "removed": len(removed), "changed": changed,
                  "unchanged": len(set(before.items) & set(new.items)) - changed,
                  "changed_fields": dict(sorted(fields.items(), key=lambda kv: (-kv[1], kv[0]))),
                  "added_examples": added[:examples], "removed_examples": removed[:examples],
                  "changed_examples": changed_examples},
        "questions": _question_stability(before, new, examples) if old and len(kinds) == 1 else None,
        "bytes": {g: {"old": old_bytes[g], "new": new_bytes[g]} for g in FILE_GROUPS},
        "files_changed": files_changed,
    }


# ------------------------------------------------------------------ text


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else _canonical(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 4] + "..." + text[-1]


def _side_line(label: str, info: Mapping[str, Any] | None) -> str:
    if not info:
        return f"{label}: (nothing: first release)"
    digest = info.get("manifest_digest") or "none (format-1 manifest)"
    return (f"{label}: {info.get('source')}  {info.get('pretty_name') or info.get('dataset')} "
            f"({info.get('dataset')}) {info.get('version')}, layout {info.get('layout')}, manifest digest {digest}")


def _signed(n: int) -> str:
    return f"{n:+,}"


def render(result: Mapping[str, Any]) -> str:
    """The text of a :func:`diff` result, as ``finer diff`` and ``finer release`` print it."""
    old, new, unit, by = result["old"], result["new"], result["unit"], result["by"]
    lines = [_side_line("old", old), _side_line("new", new)]
    if old is not None:
        if not result["same_dataset"]:
            lines.append(f"DIFFERENT DATASETS: {old.get('dataset')} vs {new.get('dataset')}")
        n = len(result["files_changed"])
        lines.append("content: identical (every file the same)" if result["identical"] else
                     f"content: differs ({n} file(s): {', '.join(result['files_changed'][:5])}"
                     f"{', ...' if n > 5 else ''})")
    width = max([len(g) for g in result["counts"]] + [5])
    lines.append(f"{unit} per {by}:")
    rows = [*result["counts"].items(), ("total", result["total"])]
    lines += [f"  {g:<{width}} {c['old']:>9,} -> {c['new']:>9,}  ({_signed(c['new'] - c['old'])})" for g, c in rows]
    items = result["items"]
    lines.append(f"{unit} by id: {items['added']:,} added, {items['removed']:,} removed, {items['changed']:,} changed, "
                 f"{items['unchanged']:,} unchanged")
    if items["changed_fields"]:
        lines.append("  changed fields: " + ", ".join(f"{k} ({v:,})" for k, v in items["changed_fields"].items()))
    for example in items["changed_examples"]:
        parts = [f"{k} {_short(v['old'])} -> {_short(v['new'])}" for k, v in list(example["fields"].items())[:3]]
        lines.append(f"  e.g. {example['id']}: " + "; ".join(parts))
    for what in ("added", "removed"):
        if items[f"{what}_examples"] and old is not None:
            lines.append(f"  {what}, e.g.: {', '.join(items[f'{what}_examples'])}")
    q = result["questions"]
    if q is not None:
        if not q["common"]:
            lines.append("question ids: none on both sides (nothing to compare)")
        elif q["stable"]:
            lines.append(f"question ids: stable ({q['common']:,} ids on both sides: same question text and options)")
        else:
            causes = ", ".join(f"{k} {v:,}" for k, v in q["by_cause"].items() if v)
            lines.append(f"question ids: NOT stable: {q['unstable']:,} of {q['common']:,} ids on both sides ask "
                         f"something else ({causes}); answers by question id do not carry over")
            lines += [f"  e.g. {e['question_id']}: {e['what']} {_short(e['old'])} -> {_short(e['new'])}"
                      for e in q["examples"]]
    lines.append("bytes per file group:")
    for group, b in result["bytes"].items():
        lines.append(f"  {group:<6} {b['old']['bytes']:>14,} -> {b['new']['bytes']:>14,}  "
                     f"({_signed(b['new']['bytes'] - b['old']['bytes'])}; files {b['old']['files']} -> "
                     f"{b['new']['files']})")
    return "\n".join(lines)


# ------------------------------------------------------------------ sides


def folder_files(folder: Path, manifest: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """path -> (sha256, size) of a verified folder: every listed file and the manifest itself."""
    files = {f["path"]: (f["sha256"], f["size"]) for f in manifest["files"]}
    files[MANIFEST_NAME] = sha256_file(Path(folder) / MANIFEST_NAME)
    return files


def snapshot_of(dataset: ResolvedDataset) -> Snapshot:
    """The snapshot of a resolved (verified) dataset, read from its shards."""
    from finer_datasets.core.reader import iter_records

    info = {**dataset.provenance(), "pretty_name": dataset.manifest.get("pretty_name")}
    return snapshot(info, iter_records(dataset.folder, dataset.manifest),
                    folder_files(dataset.folder, dataset.manifest))


@contextmanager
def open_revision(repo: Path, revision: str, *, name: str | None = None) -> Iterator[ResolvedDataset]:
    """A release repository at ``revision``, laid out in a temporary folder with ``git archive``
    and verified; the repository itself is only read."""
    name = name or f"{repo}@{revision}"
    with tempfile.TemporaryDirectory(prefix="finer-diff-") as tmp:
        folder = export_revision(repo, revision, Path(tmp) / "tree")
        try:
            manifest = verify(folder)
        except VerificationError as exc:
            raise VerificationError(exc.problems, subject=name) from exc
        yield ResolvedDataset(name=name, folder=folder, manifest=manifest, verified=True, revision=revision)


@contextmanager
def open_side(spec: str) -> Iterator[ResolvedDataset]:
    """A ``finer diff`` side: a dataset folder, ``REPO_DIR@REVISION`` or ``ORG/NAME[@REVISION]``."""
    path = Path(spec).expanduser()
    base, at, revision = spec.rpartition("@")
    if path.exists() or not at:
        yield resolve_dataset(spec)
        return
    if not revision or not base:
        raise UsageError(f"{spec}: give REPO_DIR@REVISION or ORG/NAME@REVISION (e.g. finer/compre_cap@v2.0.0)")
    repo = Path(base).expanduser()
    if repo.is_dir():
        if not is_git_repo(repo):
            raise UsageError(f"{spec}: {base} is not a git repository; REVISION applies to a release repository "
                             "(give a plain dataset folder without @)")
        with open_revision(repo, revision, name=spec) as dataset:
            yield dataset
        return
    if not HUB_ID.match(base) or base.startswith((".", "/", "~")):
        raise UsageError(f"{spec}: {base} is no folder here and not a Hub id ORG/NAME")
    yield resolve_dataset(base, revision=revision)


def diff_specs(old: str | None, new: str, *, examples: int = _EXAMPLES) -> dict[str, Any]:
    """:func:`diff` of two ``finer diff`` sides (``old`` ``None``: nothing before ``new``)."""
    with open_side(new) as b:
        after = snapshot_of(b)
    if old is None:
        return diff(None, after, examples=examples)
    with open_side(old) as a:
        before = snapshot_of(a)
    return diff(before, after, examples=examples)
