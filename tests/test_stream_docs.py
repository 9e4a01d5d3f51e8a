"""Every block of docs/streaming.md runs as written, in order, in one scratch folder (the README's
rule, tests/test_docs_commands.py), except the one that downloads from the Hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs_commands import _script, blocks

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_streaming_guide_runs_as_written(tmp_path):
    found = blocks((ROOT / "docs" / "streaming.md").read_text("utf-8"))
    assert [reason is None for _, _, reason in found] == [True, True, True, True, False]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "TOKENIZERS_PARALLELISM": "false"}
    outputs = []
    for lang, code, reason in found:
        if reason:
            continue
        run = subprocess.run(["bash", str(_script(lang, code, tmp_path))], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=900)
        assert run.returncode == 0, f"block failed:\n{code}\n--- stderr ---\n{run.stderr[-4000:]}"
        outputs.append(run.stdout)
    assert outputs[1].splitlines()[-1] == "130 578"
    assert [line.split(":")[0] for line in outputs[2].splitlines()[-2:]] == ["epoch 0", "epoch 1"]
    assert len(list((tmp_path / "out" / "compre_cap-small" / "data").glob("test-*.tar"))) == 4
