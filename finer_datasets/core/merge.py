"""Joining the parts of a build split over machines into one release (``finer merge``).

A builder that supports it (:meth:`DatasetBuilder.part_of` and :meth:`DatasetBuilder.merge_options`)
can be built in ``N`` disjoint parts (``--part i/N``), each on its own machine with its own model
endpoint or a shared one. Each part is a complete, verified build folder. :func:`merge` checks
that the parts belong together (same dataset, version, seed, options, model set-up and source;
parts 1..N each exactly once), then builds the whole source once more with

* every model answer replayed from the union of the parts' transcripts (no model access; the
  caller says how to replay one, ``replay(path) -> LLM run``, since the core knows no model), and
* what the parts fetched taken from the parts themselves (:meth:`DatasetBuilder.merge_options`),

through the ordinary :func:`~finer_datasets.core.build.build`. The result has one manifest and is
byte-identical to a one-machine build with the same model answers and fetch outcomes (the tests
check it with N=3), its card and manifest included. Global steps (e.g. a cap on the number of
tuples) run here, over all parts. A builder assigns parts by what its prompts depend on, so one
prompt is not asked in two parts; should two parts still hold different answers under one key,
the merge keeps one by :data:`CONFLICT_RULE` and counts it (``llm.merge`` in the manifest).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from finer_datasets.core.build import BuildResult, build
from finer_datasets.constants import TRANSCRIPT_CONFIG_KEY
from finer_datasets.core.builder import DatasetBuilder
from finer_datasets.core.manifest import fingerprint_files, verify
from finer_datasets.core.output import check_output
from finer_datasets.errors import OutputError, UsageError

__all__ = ["merge", "union_transcripts", "check_parts", "CONFLICT_RULE"]

logger = logging.getLogger(__name__)
_TRANSCRIPT = "transcript.jsonl"


def _same(parts: Sequence[Path], manifests: Sequence[dict[str, Any]], what: str, get: Any) -> Any:
    values = [get(m) for m in manifests]
    for path, value in zip(parts[1:], values[1:]):
        if value != values[0]:
            raise UsageError(f"the parts disagree on {what}: {parts[0]} has {values[0]!r}, {path} has {value!r}")
    return values[0]


def check_parts(builder: DatasetBuilder, parts: Sequence[Path], source: Path, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Verify every part and check that they are the parts 1..N of one build of ``source`` with
    ``options``; return their manifests (:class:`UsageError` naming the first disagreement)."""
    if not parts:
        raise UsageError("finer merge needs the part folders (built with --part I/N)")
    manifests = [verify(p) for p in parts]
    for path, manifest in zip(parts, manifests):
        if manifest["dataset"] != builder.name:
            raise UsageError(f"{path} is a build of {manifest['dataset']!r}, not {builder.name!r}")
    version = _same(parts, manifests, "the version", lambda m: m["version"])
    if version.partition("+")[0] != builder.version:
        raise UsageError(f"the parts are version {manifests[0]['version']} of {builder.name}; this builder is "
                         f"{builder.version}: merge with the finer-datasets that built them")
    _same(parts, manifests, "the seed", lambda m: m["seed"])
    _same(parts, manifests, "the builder options", lambda m: m["builder"]["options"])
    _same(parts, manifests, "the model set-up", lambda m: {k: v for k, v in (m["llm"] or {}).items()
                                                           if k in ("model", "stages", "mllm", "prompts")})
    recorded = builder.recorded_options(options)
    if manifests[0]["builder"]["options"] != recorded:
        raise UsageError(f"the parts were built with options {manifests[0]['builder']['options']}, the merge is asked "
                         f"for {recorded}; pass the parts' options")
    sources = [fingerprint_files(name, source, files) for name, files in builder.source_files(source)]
    if _same(parts, manifests, "the source", lambda m: m["sources"]) != sources:
        raise UsageError(f"the parts were built from another source than {source} (fingerprints differ)")
    numbers = [builder.part_of(m) for m in manifests]
    if any(n is None for n in numbers):
        whole = parts[numbers.index(None)]
        raise UsageError(f"{whole} is a whole build, not a part (build parts with --part I/N)")
    total = _same(parts, manifests, "the number of parts", lambda m: builder.part_of(m)[1])
    found = sorted(i for i, _ in numbers)
    if found != list(range(1, total + 1)):
        missing = sorted(set(range(1, total + 1)) - set(found))
        twice = sorted({i for i in found if found.count(i) > 1})
        raise UsageError(f"need parts 1..{total} once each: missing {missing or 'none'}, repeated {twice or 'none'}")
    return manifests


#: how :func:`union_transcripts` settles two parts that recorded different answers under one key
CONFLICT_RULE = "the entry whose canonical JSON line sorts first (code-point order)"


def union_transcripts(parts: Sequence[Path], out: Path) -> tuple[int, int]:
    """Write the union of the parts' ``transcript.jsonl`` (canonical lines, sorted by key) to ``out``;
    return ``(entries, conflicts)``.

    A key that two parts answered differently (a server that is not bit-deterministic, asked the
    same prompt in two parts) is a *conflict*: it is settled by :data:`CONFLICT_RULE`, whatever
    the order or the number of the parts, and counted (a warning names it); never fatal. Two model
    set-ups (the ``config`` entry: model parameters, stages) are no conflict but other builds: a
    :class:`UsageError`."""
    entries: dict[str, str] = {}
    conflicts: set[str] = set()
    for part in parts:
        for line in (part / _TRANSCRIPT).read_text("utf-8").splitlines():
            if not line.strip():
                continue
            key = json.loads(line)["key"]
            kept = entries.setdefault(key, line)
            if kept != line and key == TRANSCRIPT_CONFIG_KEY:
                raise UsageError(f"{part / _TRANSCRIPT}: the model set-up differs from another part's (model "
                                 "parameters or stages): the parts are not one build")
            if kept != line:
                conflicts.add(key)
                entries[key] = min(kept, line)
    for key in sorted(conflicts):
        logger.warning("transcript entry %s differs between parts; kept %s", key[:16], CONFLICT_RULE)
    out.write_text("".join(entries[k] + "\n" for k in sorted(entries)), encoding="utf-8")
    return len(entries), len(conflicts)


class _MergedRun:
    """The replaying model run of a merge, whose manifest block also counts the transcript
    conflicts the merge settled (only when there were any: otherwise the block is exactly a
    one-machine build's)."""

    def __init__(self, run: Any, conflicts: int):
        self._run, self._conflicts = run, conflicts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def manifest(self, transcript_entries: int) -> dict[str, Any]:
        block = self._run.manifest(transcript_entries)
        if self._conflicts:
            block["merge"] = {"transcript_conflicts": self._conflicts, "rule": CONFLICT_RULE}
        return block


def merge(
    builder: DatasetBuilder,
    parts: Sequence[str | Path],
    *,
    source: str | Path,
    out: str | Path,
    options: dict[str, Any] | None = None,
    replay: Callable[[Path], Any] | None = None,
    max_samples: int | None = None,
    max_bytes: int | None = None,
    command: Sequence[str] | Callable[[dict[str, Any], Any], Sequence[str]] | None = None,
    **build_kwargs: Any,
) -> BuildResult:
    """Build ``out`` from the part builds ``parts`` of ``source`` (see the module docstring).

    ``options`` are the builder options the parts were built with (their recorded form must match
    the parts' manifests); the seed, ``--strict`` and ``--max-skip-rate`` are the parts'.
    ``replay(transcript_path)`` returns the model run that answers from a transcript, e.g.
    ``lambda path: LLMRun.replay(path, stages=builder.llm_stages, prompts=PromptSet.for_builder(...))``;
    it is required when the parts used a model.
    ``max_samples``/``max_bytes`` (shard sizes) must be those a one-machine build would use.
    ``command`` is recorded in the card: for a card identical to a one-machine build's, the
    command that build records, or ``command(first_part_manifest, llm)`` returning it (the seed,
    version label and model come from the parts). Other keyword arguments go to
    :func:`~finer_datasets.core.build.build` (``repo_id``, ``progress``, ``overwrite``).
    """
    from finer_datasets.core.build import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES

    parts = [Path(p) for p in parts]
    source, options = Path(source), dict(options or {})
    # the output guard first (``--out .`` among the parts, inside a part, a link...): one line, nothing written
    out = check_output(Path(out), protected=[source, *parts], overwrite=bool(build_kwargs.get("overwrite")))
    manifests = check_parts(builder, parts, source, options)
    first = manifests[0]
    if first["llm"] is not None and replay is None:
        raise UsageError("the parts used a model: merge needs replay(transcript) to answer from their transcripts")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.finer-merge-", dir=out.parent))  # this run's own
    except OSError as exc:
        raise OutputError(f"cannot write beside {out}: {exc.strerror or exc}") from exc
    try:
        llm = None
        if first["llm"] is not None:
            entries, conflicts = union_transcripts(parts, scratch / _TRANSCRIPT)
            logger.info("merging %d parts: %d transcript entries, %d conflict(s)", len(parts), entries, conflicts)
            llm = _MergedRun(replay(scratch / _TRANSCRIPT), conflicts)
        merged = builder.merge_options(parts, options, scratch)
        if callable(command):
            command = command(first, llm)
        label = first["version"].partition("+")[2] or None  # the parts' --version-label
        return build(builder, source=source, out=out, seed=first["seed"], strict=first["builder"]["strict"],
                     version_label=label, command=command,
                     max_skip_rate=first["builder"]["max_skip_rate"], llm=llm, options=merged,
                     max_samples=max_samples or DEFAULT_MAX_SAMPLES, max_bytes=max_bytes or DEFAULT_MAX_BYTES,
                     protected=[*parts, scratch], **build_kwargs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
