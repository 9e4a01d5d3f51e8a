"""Data-parallel scoring: several processes share one run folder, each answering whole images.

``baselines/score.py`` started by ``torchrun``, ``accelerate launch``, a Slurm array or by hand with
``RANK`` and ``WORLD_SIZE`` set is rank ``RANK`` of ``WORLD_SIZE`` processes (``LOCAL_RANK`` picks
its GPU). No collective is used (no ``torch.distributed``, no padding of the last batch): the ranks
share nothing but the output folder, as in VLMEvalKit, and none ever waits for another.

* **Whole images, a stable split.** An image belongs to rank ``sha256(image id) mod W``
  (:func:`shard_of`): all its questions go to one process, so the ``letters`` engine still
  prefills it once, and every process computes the same split on its own.
* **One file per rank.** Rank r of W appends its answers to ``predictions.rank{r}-of{W}.jsonl``
  (one process alone appends to ``predictions.jsonl``, as always). A writer holds the lock
  ``.<file>.finer-lock`` while it writes: a second process started with the same rank waits for
  the first instead of asking the same questions into the same file.
* **Resume with any W.** The questions answered are those of ``predictions.jsonl`` and of every
  rank file of any W (:func:`answered`); a process asks only what none of them holds. A line cut
  by a kill at the end of a file is ignored (its writer's next session cuts it off).
* **The last rank to finish merges.** A rank done with its share takes the lock of
  ``predictions.jsonl`` and checks that every question of the run is answered; only then does it
  write ``predictions.jsonl`` (its previous lines, then every other answer in the run's question
  order: a fresh run's file is byte-identical to one process's) and the report. Otherwise it exits
  0, leaving that to the rank still working. A rank that dies leaves no report, and rerunning the
  command (with any W, or with none) asks only what is missing and then merges.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from finer_datasets.core.guard import write_file
from finer_datasets.errors import PredictionsError, UsageError
from finer_datasets.eval.predictions import check_answer
from finer_datasets.mcq.records import POLARITIES

__all__ = ["PREDICTIONS", "Ranks", "shard_of", "answer_files", "read_answers", "cut_partial_line", "answered",
           "question_order", "merge_predictions", "rank_device", "writer_lock"]

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
_RANK_FILE = re.compile(r"predictions\.rank(0|[1-9]\d*)-of([1-9]\d*)\.jsonl")  # as this module names them
_LAUNCHERS = "torchrun, accelerate launch or your own script"


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not an integer (it is set by {_LAUNCHERS})") from None
    if number < 0:
        raise UsageError(f"{name}={value!r} must be 0 or more")
    return number


@dataclass(frozen=True)
class Ranks:
    """Which process of a data-parallel run this is: rank ``rank`` of ``world``."""

    rank: int = 0
    world: int = 1
    local_rank: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Ranks:
        """``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as torchrun and ``accelerate launch`` set them;
        none set: one process. An inconsistent value is a :class:`UsageError` (one line)."""
        environ = os.environ if environ is None else environ
        rank, world = _env_int(environ, "RANK"), _env_int(environ, "WORLD_SIZE")
        local = _env_int(environ, "LOCAL_RANK")
        if world is None and rank is None:
            return cls(local_rank=local)
        if world is None or rank is None:
            given, lacking = ("RANK", "WORLD_SIZE") if world is None else ("WORLD_SIZE", "RANK")
            raise UsageError(f"{given} is set but {lacking} is not: set both (as {_LAUNCHERS} do) or neither")
        if world < 1 or rank >= world:
            raise UsageError(f"RANK={rank} with WORLD_SIZE={world}: the rank must be 0 to WORLD_SIZE-1")
        return cls(rank, world, local)

    @property
    def parallel(self) -> bool:
        return self.world > 1

    @property
    def file_name(self) -> str:
        """The predictions file this process appends to."""
        return f"predictions.rank{self.rank}-of{self.world}.jsonl" if self.parallel else PREDICTIONS

    @property
    def label(self) -> str:
        return f"rank {self.rank} of {self.world}"

    def owns(self, image_id: str) -> bool:
        return shard_of(image_id, self.world) == self.rank


def shard_of(key: str, world: int) -> int:
    """The rank (``0..world-1``) of ``key``: the same on every machine and Python version."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % world


def answer_files(out: Path) -> list[Path]:
    """``predictions.jsonl`` (when there) and every rank file of any W in ``out``, ordered by (W, rank)."""
    out = Path(out)
    ranked = []
    for path in out.glob("predictions.rank*-of*.jsonl") if out.is_dir() else ():
        match = _RANK_FILE.fullmatch(path.name)
        if match and int(match[1]) < int(match[2]) and path.is_file():
            ranked.append(((int(match[2]), int(match[1])), path))
    head = [out / PREDICTIONS] if (out / PREDICTIONS).exists() else []
    return head + [path for _, path in sorted(ranked)]


def _complete_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PredictionsError(f"cannot read predictions: {exc.strerror or exc}", path=path) from exc
    return data[: data.rfind(b"\n") + 1]


def read_answers(path: Path) -> list[tuple[str, str, str]]:
    """``(question id, response, line)`` of every complete line of an answers file this tool
    wrote; a last line without its line end (cut by a kill, or still being written) is left
    out. A bad line is a :class:`PredictionsError` naming the file and the line."""
    return _parse_answers(_complete_bytes(path), path)


def _parse_answers(data: bytes, path: Path) -> list[tuple[str, str, str]]:
    """:func:`read_answers` of the complete lines ``data`` read from ``path``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PredictionsError(f"not UTF-8 text at byte offset {exc.start}", path=path,
                               line=data.count(b"\n", 0, exc.start) + 1) from None
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise PredictionsError(f"not valid JSON ({str(exc).split(':')[0]})", path=path, line=number) from None
        if not isinstance(item, dict):
            raise PredictionsError("expected a JSON object", path=path, line=number)
        rows.append((*check_answer(item, path, number), line))
    return rows


def cut_partial_line(path: Path) -> None:
    """Cut a last line left without its line end by a kill off ``path`` (the writer's own file)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
    write_file(path, _complete_bytes(path))


def answered(out: Path) -> dict[str, str]:
    """``{question id: line}`` of every answer in ``out``'s predictions files (:func:`answer_files`);
    an id in several files keeps its first line, and different answers to one question (two
    overlapping runs) are counted in one warning."""
    lines: dict[str, str] = {}
    responses: dict[str, str] = {}
    conflicts = 0
    for path in answer_files(out):
        for qid, response, line in read_answers(path):
            if qid not in lines:
                lines[qid], responses[qid] = line, response
            elif responses[qid] != response:
                conflicts += 1
    if conflicts:
        logger.warning("%d question(s) of %s have different answers in two predictions files (overlapping runs); "
                       "the first file's answer is kept (predictions.jsonl, then the rank files by W and rank)",
                       conflicts, out)
    return lines


def question_order(pairs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The run's question ids in the order one process asks them
    (:func:`finer_datasets.eval.questions.image_questions`): images in dataset order, each image's
    pairs by id, positive before negative."""
    by_image: dict[str, list[Mapping[str, Any]]] = {}
    for pair in pairs:
        by_image.setdefault(pair["image_id"], []).append(pair)
    return [pair[polarity]["question_id"] for group in by_image.values()
            for pair in sorted(group, key=lambda p: p["pair_id"]) for polarity, _ in POLARITIES]


def merge_predictions(out: Path, answers: Mapping[str, str], order: Iterable[str]) -> int:
    """Write ``out/predictions.jsonl`` as its own complete lines, then every other answer of
    ``answers`` (:func:`answered`), those of ``order`` first and in that order, atomically; not
    at all when it already holds them all. Call it holding :func:`writer_lock` of that file.
    Returns the number of answers added."""
    path = Path(out) / PREDICTIONS
    head = _complete_bytes(path) if path.exists() else b""
    present = {qid for qid, _, _ in _parse_answers(head, path)}  # the bytes kept, read once
    wanted = [qid for qid in order if qid in answers and qid not in present]
    taken = set(wanted)
    added = wanted + [qid for qid in answers if qid not in present and qid not in taken]
    if added or (path.exists() and len(head) != path.stat().st_size):
        write_file(path, head + "".join(answers[qid] + "\n" for qid in added).encode("utf-8"))
    return len(added)


def rank_device(device: str | None, local_rank: int | None) -> str | None:
    """The device of a rank: ``cuda:LOCAL_RANK`` (modulo the GPUs visible) when ``device`` is unset
    or ``cuda`` and there is a GPU; any other ``device`` as given."""
    if local_rank is None or device not in (None, "cuda"):
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{local_rank % count}" if count else device


def writer_lock(path: Path) -> Any:
    """The lock held while writing the predictions file ``path``: ``.<name>.finer-lock`` beside it
    (a second writer of the same file waits for the first)."""
    from finer_datasets.core.staging import _locked

    return _locked(path.parent / f".{path.name}.finer-lock")
