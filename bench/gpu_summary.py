"""The summary table of ``bench/gpu.sh``: one row per tracked GPU figure, read from the JSON files
that ``bench/score.py --json``, ``bench/dpo.py --json`` and pytest's JUnit XML left in one folder.

    python bench/gpu_summary.py OUT_DIR

Prints a Markdown table (figure | measured | target | verdict) and writes it to ``OUT_DIR/summary.md``.
A verdict is given only for the setting the targets are set on (the 7B architecture on a CUDA device);
elsewhere it reads ``(not the GPU setting)``. A step that did not leave its file is a ``FAILED`` row,
the exactness tests skipped on purpose (``tests.skipped`` holding one line) a ``skipped`` row with that line.

Also the small helpers the benchmark scripts share (atomic JSON writes, the versions of the stack).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

TARGETS = {  # issue 20: one H100, the Qwen2.5-VL-7B architecture with random weights
    "letters_mcq_s": 190.0,  # MCQ/s at 30 MCQ per image
    "dpo_ratio": 8.0,  # --fast end to end / TRL layout (gradient checkpointing, reference forward in the step)
    "dpo_tuples_s": 12.0,  # --fast end to end, LoRA r32 q/v, batch 8
}


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def environment(device: str) -> dict:
    """The device's name and the versions of the stack, for the table's header."""
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "transformers", "peft"):  # bench/dpo.py adds trl's where it imports
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    cuda = device.startswith("cuda")
    return {"device": device, "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
            "versions": versions}


def _load(folder: Path, name: str) -> dict | None:
    path = folder / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None




def _num(value: float | None, unit: str, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}" if unit in ("x", "%") else f"{value:.{digits}f} {unit}"


def _flops(value: float | None) -> str:
    if not value:
        return "n/a"
    scale = next((s for s in ("T", "G", "M", "k") if value >= {"T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3}[s]), "")
    return f"{value / {'T': 1e12, 'G': 1e9, 'M': 1e6, 'k': 1e3, '': 1}[scale]:.2f} {scale}FLOP"


def _verdict(on_target: bool, value: float | None, target: float) -> str:
    if not on_target:
        return "(not the GPU setting)"
    if value is None:
        return "n/a"
    return "met" if value >= target else "missed"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def tests_row(folder: Path) -> tuple[str, str]:
    """(measured, verdict) of the bf16 exactness tests, from pytest's JUnit XML."""
    skipped = folder / "tests.skipped"
    if skipped.is_file():
        return f"skipped: {skipped.read_text(encoding='utf-8').strip()}", "n/a"
    path = folder / "gpu-tests.xml"
    if not path.is_file():
        return "FAILED (no result; see gpu.log)", "failed"
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return "FAILED (unreadable JUnit XML; see gpu.log)", "failed"
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
    text = f"{passed} passed, {count['failures'] + count['errors']} failed, {count['skipped']} skipped"
    if count["failures"] + count["errors"]:
        return text, "failed"
    if count["tests"] == 0 or passed == 0:
        return text + " (no CUDA device)" if count["skipped"] else text, "n/a"
    return text, "met"


def table(folder: Path) -> tuple[str, bool]:
    """The Markdown summary of the results in ``folder`` and whether every step ran cleanly."""
    score, dpo = _load(folder, "score.json"), _load(folder, "dpo.json")
    env = (score or dpo or {}).get("env", {})
    on_target = bool(env) and env.get("device", "").startswith("cuda") and \
        (score or dpo or {}).get("arch") == "qwen2.5-vl-7b"
    rows: list[tuple[str, str, str, str]] = []
    ok = True
    if score is None:
        rows.append(("letters engine vs generate (bench/score.py)", "FAILED (no result; see gpu.log)",
                     f">= {TARGETS['letters_mcq_s']:.0f} MCQ/s", "failed"))
        ok = False
    else:
        s = score
        peak = s.get("matmul_tflops")
        rows += [
            (f"matmul peak ({s['matmul_dtype']} {s['matmul_size']}^3)", _num(peak, "TFLOP/s"), "", ""),
            (f"model forward FLOPs per MCQ ({s['per_image']} MCQ/image)",
             _flops(s.get("flops_per_mcq")), "", ""),
            ("generate: 3 new tokens, batch 1", _num(s["generate_mcq_s"], "MCQ/s"), "", ""),
            (f"letters: prefix once per image, batch {s['batch']}", _num(s["letters_mcq_s"], "MCQ/s"),
             f">= {TARGETS['letters_mcq_s']:.0f} MCQ/s", _verdict(on_target, s["letters_mcq_s"],
                                                                  TARGETS["letters_mcq_s"])),
            ("RATIO letters / generate", _num(_ratio(s["letters_mcq_s"], s["generate_mcq_s"]), "x", 1), "", ""),
            ("letters, % of the matmul roofline", _num(s.get("letters_roofline_pct"), "%", 1), "", ""),
            ("generate, % of the matmul roofline", _num(s.get("generate_roofline_pct"), "%", 1), "", ""),
        ]
    if dpo is None:
        rows.append(("DPO --fast vs TRL layout (bench/dpo.py)", "FAILED (no result; see gpu.log)",
                     f">= {TARGETS['dpo_ratio']:.0f}x", "failed"))
        ok = False
    else:
        r = dpo["rates"]
        trl = r.get("trl_ckpt")
        trl_note = "" if trl is not None else f" ({dpo.get('trl_skipped', 'TRL layout not measured')})"
        rows += [
            (f"DPO TRL layout, batch {dpo['batch']}: checkpointing, reference forward in step",
             _num(trl, "tuples/s") + trl_note, "", ""),
            (f"DPO --fast end to end, micro-batch {dpo['fast_batch']}: reference pass + step (cache)",
             _num(r.get("fast_cached_e2e"), "tuples/s"),
             f">= {TARGETS['dpo_tuples_s']:.0f} tuples/s",
             _verdict(on_target, r.get("fast_cached_e2e"), TARGETS["dpo_tuples_s"])),
            ("DPO --fast, reference inline", _num(r.get("fast_inline"), "tuples/s"), "", ""),
            ("RATIO DPO --fast (cache) / TRL layout", _num(_ratio(r.get("fast_cached_e2e"), trl), "x", 1),
             f">= {TARGETS['dpo_ratio']:.0f}x", _verdict(on_target, _ratio(r.get("fast_cached_e2e"), trl),
                                                         TARGETS["dpo_ratio"])),
            ("RATIO DPO --fast (inline) / TRL layout", _num(_ratio(r.get("fast_inline"), trl), "x", 1), "", ""),
        ]
    measured, verdict = tests_row(folder)
    shown = verdict if on_target or verdict == "failed" else "(not the GPU setting)"
    rows.append(("bf16 exactness tests (pytest -m gpu)", measured, "all pass", shown))
    ok = ok and verdict != "failed"
    v = {**env.get("versions", {}), "trl": (dpo or {}).get("env", {}).get("versions", {}).get("trl")}
    head = (f"arch {(score or dpo or {}).get('arch', '?')} on {env.get('device_name', '?')}; "
            + ", ".join(f"{k} {v.get(k) or 'not installed'}" for k in ("torch", "transformers", "peft", "trl")))
    lines = [head, "", "| figure | measured | target | verdict |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n", ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="the folder bench/gpu.sh wrote its results into")
    args = p.parse_args(argv)
    text, ok = table(args.folder)
    write_text(args.folder / "summary.md", text)
    sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
