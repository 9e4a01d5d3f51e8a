"""Every command the README shows runs, from its command line, exactly as written.

The ```bash and ```python blocks of README.md run in order, in one scratch folder (where `baselines/`
is the repository's), with the test environment's `finer` and `python` first on PATH, each block as
one script (`set -e`; background jobs stopped at its end), and must succeed. A block that cannot run
offline here (it needs a GPU, the internet, a real source or another tool) is preceded by a line
`<!-- not run: <reason> -->`, and the reason is printed; every other block runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>[^>]+?) -->\n)?```(?P<lang>bash|python)\n(?P<code>.*?)\n```", re.S)
TIMEOUT = 900


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """``(language, code, reason not run)`` of every bash/python block, in order."""
    return [(m["lang"], m["code"], m["reason"]) for m in BLOCK.finditer(text)]


def readme_blocks() -> list[tuple[str, str, str | None]]:
    return blocks((ROOT / "README.md").read_text("utf-8"))


def test_every_block_not_run_says_why_and_most_blocks_run():
    found = readme_blocks()
    skipped = [reason for _, _, reason in found if reason]
    assert all(len(reason.strip()) > 10 for reason in skipped)
    assert len(found) - len(skipped) >= 7, "the README's commands must mostly be runnable offline"


def _script(lang: str, code: str, scratch: Path) -> Path:
    index = len(list(scratch.glob(".block-*")))
    if lang == "python":
        path = scratch / f".block-{index:02d}.py"
        path.write_text(code + "\n", encoding="utf-8")
        runner = scratch / f".block-{index:02d}.sh"
        runner.write_text(f"set -e\npython {path.name}\n", encoding="utf-8")
        return runner
    path = scratch / f".block-{index:02d}.sh"
    path.write_text("set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + code + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_readme_commands_run_as_written(tmp_path):
    scratch = tmp_path / "work"
    scratch.mkdir()
    (scratch / "baselines").symlink_to(ROOT / "baselines")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    ran = 0
    for lang, code, reason in readme_blocks():
        if reason:
            print(f"not run: {reason}: {code.splitlines()[0]}")
            continue
        script = _script(lang, code, scratch)
        run = subprocess.run(["bash", str(script)], cwd=scratch, env=env, capture_output=True, text=True,
                             timeout=TIMEOUT)
        assert run.returncode == 0, f"README block failed (exit {run.returncode}):\n{code}\n--- stderr ---\n" \
                                    f"{run.stderr[-4000:]}\n--- stdout ---\n{run.stdout[-2000:]}"
        ran += 1
    assert ran >= 7
