"""The CPU smoke run of baselines/README.md, run line by line in subprocesses exactly as written
(offline: HF_HUB_OFFLINE=1): a tiny random model saved to disk, the FINER-Tuning and CompreCap
samples built, two DPO steps with TRL and with --fast from the Qwen2.5-VL preset, then score.py on
the saved LoRA adapter folder."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def smoke_commands() -> list[str]:
    text = (ROOT / "baselines" / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- smoke-run: .*? -->\n```bash\n(.+?)\n```", text, flags=re.S)
    assert block, "baselines/README.md has no smoke-run block"
    return block.group(1).splitlines()


def argv(line: str) -> list[str]:
    words = shlex.split(line)
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    if words[0] == "finer":
        exe = Path(sys.executable).parent / "finer"
        return [str(exe), *words[1:]] if exe.exists() else [sys.executable, "-m", "finer_datasets.cli", *words[1:]]
    raise AssertionError(f"unexpected command in the smoke run: {line}")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run every line once; returns (folder, {line: CompletedProcess})."""
    work = tmp_path_factory.mktemp("smoke")
    (work / "baselines").symlink_to(ROOT / "baselines")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    runs = {}
    for line in smoke_commands():
        start = time.perf_counter()
        out = subprocess.run(argv(line), cwd=work, capture_output=True, text=True, timeout=600, env=env)
        print(f"{time.perf_counter() - start:6.1f} s  {line}")
        runs[line] = out
        assert out.returncode == 0, f"{line}\n{out.stderr[-3000:]}"
    return work, runs


def test_the_readme_lists_the_documented_steps():
    lines = smoke_commands()
    assert lines[0] == "python -m finer_datasets.testing.tiny_vlm --out tiny-vlm"
    assert sum(line.startswith("python baselines/train_dpo.py --config baselines/configs/") for line in lines) == 2
    assert sum("--fast" in line for line in lines) == 1
    assert lines[-1] == ("python baselines/score.py out/compre_cap --model runs/smoke --engine letters "
                         "--out runs/smoke-eval")


def test_every_line_runs_without_a_traceback(smoke):
    _, runs = smoke
    assert all("Traceback" not in out.stderr for out in runs.values())


def test_training_from_the_preset_on_cpu(smoke):
    work, runs = smoke
    for name, trainer in (("smoke", "trl.DPOTrainer"), ("smoke-fast", "fast (packed)")):
        folder = work / "runs" / name
        line = next(line for line in runs if f"--output_dir runs/{name} " in line)
        warnings = [w for w in runs[line].stderr.splitlines() if w.startswith("WARNING")]
        assert warnings == ["WARNING finer.train_dpo: --use_cpu: training in float32 instead of bfloat16 "
                            "(bf16: false, dtype: float32)"]
        report = json.loads((folder / "report.json").read_text())
        assert report["trainer"] == trainer and report["train"]["steps"] == 2
        assert report["available_tuples"] == 116 and report["requested_tuples"] == 32
        assert report["train_tuples"] == 32 and report["script_args"]["image_max_pixels"] == 262144
        adapter = json.loads((folder / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == str((work / "tiny-vlm").resolve())
        assert adapter["r"] == 32 and adapter["lora_alpha"] == 64
        stdout = runs[line].stdout.splitlines()  # the trainer's own logs come first; the summary last
        printed = json.loads("\n".join(stdout[len(stdout) - stdout[::-1].index("{") - 1:]))
        assert printed["steps"] == 2 and "loss" in printed


def test_scoring_the_saved_adapter(smoke):
    work, runs = smoke
    out = runs["python baselines/score.py out/compre_cap --model runs/smoke --engine letters --out runs/smoke-eval"]
    assert "report: runs/smoke-eval/report.md" in out.stdout
    report = json.loads((work / "runs" / "smoke-eval" / "report.json").read_text())
    assert report["model"] == "runs/smoke"
    assert {name: block["n_pairs"] for name, block in report["settings"].items()} == {
        "multi_obj": 55, "multi_attr": 104, "multi_rel": 65, "wh": 65}
    assert len((work / "runs" / "smoke-eval" / "predictions.jsonl").read_text().splitlines()) == 2 * 289
