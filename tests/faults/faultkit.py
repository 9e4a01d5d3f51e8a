"""Helpers of the fault suite (imported by its tests; conftest.py exposes the fixture): run ``finer`` and check that a failure is clean.

A clean failure: the documented exit code, exactly one ``error: ...`` line on stderr naming the
culprit, no traceback, the source tree byte-for-byte unchanged, any previous output unchanged,
and no staging folder left beside the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finer_datasets.cli import main


def tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (symlinks by their target text), by relative path."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = "symlink:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


class Run:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def clean_failure(self, code: int, *culprits: str) -> "Run":
        assert self.code == code, (self.code, self.err)
        assert "Traceback" not in self.err and "Traceback" not in self.out, self.err[-3000:]
        errors = [line for line in self.err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, self.err
        for culprit in culprits:
            assert culprit in errors[0], (culprit, errors[0])
        assert "<_io." not in self.err and "object at 0x" not in self.err
        return self


@pytest.fixture
def finer(capsys):
    """``finer(*args)`` runs the CLI in-process and returns a :class:`Run`."""

    def run(*args: object) -> Run:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors (one line, exit 2) end the process this way
            code = exc.code
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def built(tmp_path, sample_build):
    """A private copy of the sample build (tests tamper with it, or check that nothing does)."""
    out = tmp_path / "ds"
    shutil.copytree(sample_build.out, out)
    return out


@pytest.fixture
def oracle(tmp_path, sample_build):
    """Predictions answering every question of the sample build right."""
    from finer_datasets import load_finer

    path = tmp_path / "oracle.jsonl"
    with path.open("w") as f:
        for r in load_finer(str(sample_build.out), "questions", split="test"):
            f.write(json.dumps({"question_id": r["question_id"], "response": r["answer"]}) + "\n")
    return path


def finer_process(*args: object, env: dict | None = None, timeout: float = 300) -> Run:
    """The CLI in a subprocess (for signals, crashes and anything that needs a fresh process)."""
    done = subprocess.run([sys.executable, "-m", "finer_datasets.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    return Run(done.returncode, done.stdout, done.stderr)


def leftovers(parent: Path) -> list[str]:
    """Staging folders or temp files a run left beside its output (``.<name>.finer-build-<random>``,
    ``.<name>.<random>.finer-tmp``, ``.<name>.finer-merge-<random>``)."""
    return sorted(p.name for p in Path(parent).iterdir()
                  if ".finer-build" in p.name or ".finer-merge" in p.name or p.name.endswith((".finer-tmp", ".finer-old")))
