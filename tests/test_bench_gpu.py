"""bench/gpu.sh: every GPU figure in one run and one summary table, proved end to end on the CPU with
the tiny models (the command bench/README.md shows, exactly as written), also the way the lent GPU
machine runs it (no trl, datasets or jsonschema_rs there); its usage errors; the summary's failure rows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_docs_commands import blocks

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "bash bench/gpu.sh --device cpu --arch tiny"
ABSENT_ON_THE_GPU_MACHINE = ("trl", "datasets", "jsonschema_rs")


def run(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``command`` from the repository root, this interpreter as the script's Python, temp files in tmp_path."""
    base = {k: v for k, v in os.environ.items() if k != "OUT"}
    return subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**base, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), **env})


def hide_packages(folder: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes each package of ABSENT_ON_THE_GPU_MACHINE unimportable."""
    for name in ABSENT_ON_THE_GPU_MACHINE:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n", encoding="utf-8")
    return folder


def test_the_readme_runs_exactly_the_command_tested_here():
    runnable = [code for lang, code, reason in blocks((ROOT / "bench" / "README.md").read_text("utf-8"))
                if reason is None]
    assert runnable == [COMMAND]


@pytest.mark.slow
@pytest.mark.parametrize("machine", ["here", "like the GPU machine"])
def test_gpu_script_runs_end_to_end_on_cpu_with_tiny_models(machine, tmp_path):
    env = {"PYTHONPATH": str(hide_packages(tmp_path / "hidden"))} if machine != "here" else {}
    proc = run(COMMAND, tmp_path, **env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = Path(re.search(r"^== summary \((.+)\)$", proc.stdout, re.M).group(1))
    assert out.parent == tmp_path and out.name.startswith("finer-gpu-bench.")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("finer-gpu-work.")] == []  # cleaned up
    summary = (out / "summary.md").read_text("utf-8")
    assert proc.stdout.endswith(summary)  # the table is what the command prints last
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in summary.splitlines()
            if line.startswith("| ") and not line.startswith("| figure") and not line.startswith("| ---")}
    assert len(rows) == 13
    score = json.loads((out / "score.json").read_text("utf-8"))
    dpo = json.loads((out / "dpo.json").read_text("utf-8"))
    assert score["arch"] == dpo["arch"] == "tiny" and score["env"]["device"] == "cpu"
    assert score["per_image"] == 30 and score["matmul_tflops"] > 0 and score["flops_per_mcq"] > 1e6
    assert score["letters_mcq_s"] > 0 and score["generate_mcq_s"] > 0 and score["letters_roofline_pct"] > 0
    assert rows["letters: prefix once per image, batch 16"].endswith(" MCQ/s")
    rates = dpo["rates"]
    assert rates["fast_cached_e2e"] > 0 and rates["fast_inline"] > 0
    assert "(not the GPU setting)" in summary and "| met |" not in summary and "missed" not in summary
    if machine == "here":
        assert rates["trl_ckpt"] > 0 and dpo["trl_skipped"] is None
        assert re.match(r"\d+(\.\d)?x$", rows["RATIO DPO --fast (cache) / TRL layout"])
        assert "3 skipped (no CUDA device)" in summary  # the gpu-marked tests ran under pytest and skipped
        assert (out / "gpu-tests.xml").is_file()
    else:
        assert "jsonschema_rs not installed: a stand-in that validates nothing is used" in proc.stdout
        assert "trl_ckpt" not in rates and dpo["trl_skipped"] == "trl not installed"
        assert rows["RATIO DPO --fast (cache) / TRL layout"] == "n/a"
        assert "n/a (trl not installed)" in summary and summary.startswith("arch tiny on cpu; ")
        assert summary.splitlines()[0].endswith(", trl not installed")  # the header says so too
        assert "skipped: they need trl and datasets; not installed here: trl datasets" in summary
        assert not (out / "gpu-tests.xml").exists()


@pytest.mark.parametrize("args, code, message", [
    ("--arch huge", 2, "error: --arch huge: not tiny or qwen2.5-vl-7b"),
    ("--device tpu", 2, "error: --device tpu: not cpu, cuda or cuda:N"),
    ("--out", 2, "error: --out needs a value"),
    ("--fast", 2, "error: unknown argument --fast (bash bench/gpu.sh --help)"),
    ("--wheels {tmp}", 2, "error: --wheels {tmp}: no .whl files there"),
    ("--device cpu --arch tiny --out {tmp}", 6, "error: --out {tmp}: not a new or empty folder"),
])
def test_gpu_script_usage_errors_are_one_line(args, code, message, tmp_path):
    (tmp_path / "mine.txt").write_text("not the script's", encoding="utf-8")
    proc = run(f"bash bench/gpu.sh {args.format(tmp=tmp_path)}", tmp_path)
    assert proc.returncode == code
    assert proc.stderr.startswith(message.format(tmp=tmp_path)) and proc.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]  # nothing written, nothing left


def test_gpu_script_help_lists_the_options(tmp_path):
    proc = run("bash bench/gpu.sh --help", tmp_path)
    assert proc.returncode == 0
    for option in ("--device DEV", "--arch A", "--out DIR", "--wheels DIR", COMMAND):
        assert option in proc.stdout


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA refusal")
def test_gpu_script_refuses_cuda_where_there_is_none(tmp_path):
    proc = run("bash bench/gpu.sh --device cuda --arch tiny", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "error: --device cuda: torch sees no CUDA device here (use --device cpu)\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("finer-gpu")] == []  # no output, no leftovers


def _summary(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_summary.py"), str(folder)], capture_output=True,
                          text=True, timeout=60)


def test_summary_reports_a_step_without_result_and_failed_tests_as_failed(tmp_path):
    (tmp_path / "gpu-tests.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="3" failures="1" errors="0" skipped="0">'
        "</testsuite></testsuites>", encoding="utf-8")
    proc = _summary(tmp_path)
    assert proc.returncode == 1
    assert "| letters engine vs generate (bench/score.py) | FAILED (no result; see gpu.log) |" in proc.stdout
    assert "| DPO --fast vs TRL layout (bench/dpo.py) | FAILED (no result; see gpu.log) |" in proc.stdout
    assert "| bf16 exactness tests (pytest -m gpu) | 2 passed, 1 failed, 0 skipped | all pass | failed |" in proc.stdout
    assert (tmp_path / "summary.md").read_text("utf-8") == proc.stdout


def test_summary_gives_verdicts_on_the_gpu_setting_only(tmp_path):
    env = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "versions": {"torch": "2.11.0"}}
    score = {"arch": "qwen2.5-vl-7b", "env": env, "per_image": 30, "batch": 16, "matmul_size": 8192,
             "matmul_dtype": "bfloat16", "matmul_tflops": 800.0, "flops_per_mcq": 2.9e12, "generate_mcq_s": 6.0,
             "letters_mcq_s": 200.0, "generate_roofline_pct": 2.2, "letters_roofline_pct": 72.5}
    dpo = {"arch": "qwen2.5-vl-7b", "env": {**env, "versions": {"trl": "1.16.0"}}, "batch": 8, "fast_batch": 32,
           "rates": {"trl_ckpt": 1.5, "fast_cached_e2e": 10.0, "fast_inline": 13.5}, "trl_skipped": None}
    (tmp_path / "score.json").write_text(json.dumps(score), encoding="utf-8")
    (tmp_path / "dpo.json").write_text(json.dumps(dpo), encoding="utf-8")
    (tmp_path / "gpu-tests.xml").write_text(
        '<testsuites><testsuite tests="3" failures="0" errors="0" skipped="0"/></testsuites>', encoding="utf-8")
    proc = _summary(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("arch qwen2.5-vl-7b on NVIDIA H100 80GB HBM3; torch 2.11.0, transformers not "
                                  "installed, peft not installed, trl 1.16.0\n")
    assert "| letters: prefix once per image, batch 16 | 200.00 MCQ/s | >= 190 MCQ/s | met |" in proc.stdout
    assert "| model forward FLOPs per MCQ (30 MCQ/image) | 2.90 TFLOP |" in proc.stdout
    assert "| RATIO DPO --fast (cache) / TRL layout | 6.7x | >= 8x | missed |" in proc.stdout
    assert "reference pass + step (cache) | 10.00 tuples/s | >= 12 tuples/s | missed |" in proc.stdout
    assert "| bf16 exactness tests (pytest -m gpu) | 3 passed, 0 failed, 0 skipped | all pass | met |" in proc.stdout
