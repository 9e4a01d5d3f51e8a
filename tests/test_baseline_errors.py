"""Every argument error of baselines/train_dpo.py and baselines/score.py is one ``error: ...`` line
with exit status 2 and no traceback: a fault table run through each script's command line (in
process, then the process boundary itself for a few cases), plus the model checks (a path that is
no folder, a Hub id offline or unreachable: one line, no retries)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from finer_datasets.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "baselines"))
import score as score_script  # noqa: E402
import train_dpo  # noqa: E402

TUPLES = Path(__file__).parent / "fixtures" / "tuning_trl" / "tuples.jsonl"
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9 if i else ['lol'] * 9)}]\n" for i in range(9))


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """Broken config files, by name."""
    folder = tmp_path_factory.mktemp("configs")
    files = {"unknown.yaml": b"not_an_option: 3\n", "latin1.yaml": "model: caf\xe9\n".encode("latin-1"),
             "list.yaml": b"- learning_rate\n- 5e-6\n", "bomb.yaml": (BOMB + "beta: *l8\n").encode(),
             "broken.yaml": b"beta: [1\n", "type.yaml": b"learning_rate: abc\n", "choice.yaml": b"dtype: float33\n",
             "scalar.yaml": b"beta: [1, 2]\n", "score-type.yaml": b"batch_size: abc\n",
             "score-unknown.yaml": b"modle: x\n", "score-bomb.yaml": (BOMB + "settings: *l8\n").encode()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "a-folder.yaml").mkdir()
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from finer_datasets.testing.tiny_vlm import save_tiny_vlm

    return save_tiny_vlm(tmp_path_factory.mktemp("tiny") / "tiny-vlm")


def one_error_line(capsys, code: int, expected: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    return lines[0]


DATA = ["--dataset", str(TUPLES)]
TRAIN_FAULTS = [
    ([], "error: --dataset is required"),
    (["--foo"], "train_dpo.py: unrecognized arguments: --foo (see train_dpo.py --help)"),
    (["--dataset", "./missing"], "--dataset ./missing: no such file or folder"),
    (["--dataset", "missing.jsonl"], "--dataset missing.jsonl: no such file or folder"),
    (["--config", "{c}/missing.yaml", *DATA], "missing.yaml: no such file"),
    (["--config", "{c}/a-folder.yaml", *DATA], "a-folder.yaml: a folder, not a file"),
    ([*DATA, "--config"], "--config needs a YAML file"),
    (["--config", "{c}/unknown.yaml", *DATA], "unknown.yaml: unknown option(s) not_an_option"),
    (["--config", "{c}/latin1.yaml", *DATA], "latin1.yaml: not UTF-8 text"),
    (["--config", "{c}/list.yaml", *DATA], "list.yaml: expected a mapping of option names to values, got a list"),
    (["--config", "{c}/bomb.yaml", *DATA], "bomb.yaml: expands to more than 100000 YAML nodes"),
    (["--config", "{c}/broken.yaml", *DATA], "broken.yaml: not valid YAML at line 2"),
    (["--config", "{c}/type.yaml", *DATA], "type.yaml: learning_rate: 'abc' is not a valid value"),
    (["--config", "{c}/choice.yaml", *DATA], "choice.yaml: dtype: 'float33' is not one of"),
    (["--config", "{c}/scalar.yaml", *DATA], "scalar.yaml: beta takes one value, not a list"),
    ([*DATA, "--val_ratio", "2"], "--val_ratio must be a fraction in [0, 1)"),
    ([*DATA, "--val_ratio", "x"], "argument --val_ratio/--val-ratio: invalid float value: 'x'"),
    ([*DATA, "--max_train_samples", "0"], "--max_train_samples must be a positive integer, got 0"),
    ([*DATA, "--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be a positive integer"),
    ([*DATA, "--global_batch_size", "-8"], "--global_batch_size must be a positive integer"),
    ([*DATA, "--image_max_pixels", "0"], "--image_max_pixels must be a positive integer"),
    ([*DATA, "--learning_rate", "-1"], "--learning_rate must be a positive number"),
    ([*DATA, "--max_steps", "0"], "--max_steps must be -1 (train num_train_epochs) or a positive integer"),
    ([*DATA, "--lora_dropout", "1.5"], "--lora_dropout must be a fraction in [0, 1)"),
    ([*DATA, "--subsets", "colour"], "argument --subsets: invalid choice: 'colour'"),
    ([*DATA, "--eval_strategy", "steps", "--save_strategy", "no", "--load_best_model_at_end", "true"],
     "--load_best_model_at_end requires the save and eval strategy to match"),
    ([*DATA, "--use_cpu", "--output_dir", "{c}/o"], "--model_name_or_path is required"),
    ([*DATA, "--use_cpu", "--model_name_or_path", "./no-such-model"],
     "--model_name_or_path ./no-such-model: no such folder"),
]


@pytest.mark.parametrize("argv, expected", TRAIN_FAULTS, ids=[f"{i}-{e[:40]}" for i, (_, e) in enumerate(TRAIN_FAULTS)])
def test_train_dpo_faults_are_one_line(argv, expected, configs, capsys):
    code = train_dpo.cli([a.replace("{c}", str(configs)) for a in argv])
    one_error_line(capsys, code, expected)


def test_fewer_tuples_than_asked_is_refused(tiny_model, tmp_path, capsys):
    argv = [*DATA, "--model_name_or_path", str(tiny_model), "--use_cpu", "--output_dir", str(tmp_path / "o"),
            "--max_train_samples", "9"]
    line = one_error_line(capsys, train_dpo.cli(argv), "--max_train_samples 9:")
    assert "has only 8 tuples after the filters" in line and "--allow_fewer_samples" in line
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_allow_fewer_samples_trains_on_all_and_says_so(tiny_model, tmp_path, caplog):
    argv = [*DATA, "--model_name_or_path", str(tiny_model), "--use_cpu", "--output_dir", str(tmp_path / "o"),
            "--max_train_samples", "9", "--allow_fewer_samples", "--max_steps", "1", "--val_ratio", "0",
            "--per_device_train_batch_size", "2", "--report_to", "none", "--save_strategy", "no"]
    with caplog.at_level("WARNING", logger="finer.train_dpo"):
        report = train_dpo.main(*train_dpo.parse_args(argv))
    assert [r.getMessage() for r in caplog.records if r.name == "finer.train_dpo"] == [
        "--allow_fewer_samples: training on all 8 tuples, fewer than --max_train_samples 9"]
    assert (report["available_tuples"], report["requested_tuples"], report["train_tuples"]) == (8, 9, 8)
    import json

    assert json.loads((tmp_path / "o" / "report.json").read_text())["requested_tuples"] == 9


SCORE_FAULTS = [
    ([], "error: --model is required"),
    (["--foo"], "score.py: unrecognized arguments: --foo (see score.py --help)"),
    (["--config", "{c}/missing.yaml"], "missing.yaml: no such file"),
    (["--config", "{c}/a-folder.yaml"], "a-folder.yaml: a folder, not a file"),
    (["--config", "{c}/latin1.yaml"], "latin1.yaml: not UTF-8 text"),
    (["--config", "{c}/list.yaml"], "list.yaml: expected a mapping"),
    (["--config", "{c}/score-bomb.yaml"], "score-bomb.yaml: expands to more than 100000 YAML nodes"),
    (["--config", "{c}/broken.yaml"], "broken.yaml: not valid YAML"),
    (["--config", "{c}/score-type.yaml", "--model", "m"], "score-type.yaml: batch_size: 'abc' is not an integer"),
    (["--config", "{c}/score-unknown.yaml", "--model", "m"], "unknown field(s) modle"),
    (["--model", "m", "--timeout", "0"], "--timeout must be a positive number of seconds"),
    (["--model", "m", "--bootstrap", "-1"], "--bootstrap must be 0 or more"),
    (["--model", "m", "--max-unparseable", "2"], "--max-unparseable must be a share between 0 and 1"),
    (["--model", "m", "--max-retries", "-1"], "--max-retries must be 0 or more"),
    (["--model", "m", "--dtype", "float33"], "--dtype 'float33': use one of auto, bfloat16, float16, float32"),
    (["--model", "m", "--batch-size", "x"], "argument --batch-size/--batch_size: invalid int value: 'x'"),
]


@pytest.mark.parametrize("argv, expected", SCORE_FAULTS, ids=[f"{i}-{e[:40]}" for i, (_, e) in enumerate(SCORE_FAULTS)])
def test_score_faults_are_one_line(argv, expected, configs, capsys):
    code = score_script.cli([a.replace("{c}", str(configs)) for a in argv])
    one_error_line(capsys, code, expected)


@pytest.mark.parametrize("device, expected", [("gpu", "--device gpu: not a torch device"),
                                              ("cuda", "--device cuda: no CUDA device here")])
def test_score_bad_device_is_one_line(device, expected, tiny_model, sample_build, tmp_path, capsys):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code = score_script.cli([str(sample_build.out), "--model", str(tiny_model), "--device", device, "--limit", "1",
                             "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and [line for line in err.splitlines() if line.startswith("error: ")] == [
        f"error: {expected}" + (" (cpu, cuda, cuda:N, mps, ...)" if device == "gpu" else " (use --device cpu)")]


# -- the model checks ---------------------------------------------------------------------------------

def test_model_sources(tiny_model, tmp_path, monkeypatch):
    import huggingface_hub

    from finer_datasets.eval.engines import check_model_source

    check_model_source(str(tiny_model))  # a folder passes untouched
    (tmp_path / "file").write_text("x")
    for name, message in ((str(tmp_path / "file"), "a file, not a model folder"), ("./nope", "no such folder"),
                          ("a/b/c", "no such folder"), ("bad name", "not a Hub model id")):
        with pytest.raises(UsageError, match=message):
            check_model_source(name)
    asked = []
    monkeypatch.setattr(huggingface_hub, "model_info", lambda *a, **k: asked.append(a))
    monkeypatch.setattr(huggingface_hub.constants, "is_offline_mode", lambda: True)
    with pytest.raises(UsageError, match="--model Org/Model: no such folder, and not in the Hugging Face cache "
                                         r"\(HF_HUB_OFFLINE is set\)"):
        check_model_source("Org/Model")
    assert asked == []  # offline: the Hub is never asked
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name, revision=None: "/cache/config.json" if name == "config.json" else None)
    check_model_source("Org/Cached")  # in the cache: fine offline, never asked
    assert asked == []


def test_hub_answers_no_such_model(monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    from finer_datasets.eval.engines import check_model_source

    def missing(*args, **kwargs):
        request = httpx2.Request("GET", "https://huggingface.co/api/models/Org/Missing")
        raise RepositoryNotFoundError("404 Repository Not Found", response=httpx2.Response(404, request=request))

    monkeypatch.setattr(huggingface_hub.constants, "is_offline_mode", lambda: False)
    monkeypatch.setattr(huggingface_hub, "model_info", missing)
    with pytest.raises(UsageError, match="the Hub has no such model or revision .RepositoryNotFoundError"):
        check_model_source("Org/Missing", option="--model_name_or_path")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_script(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "baselines" / script), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **env})


def test_the_scripts_print_one_line_across_the_process_boundary(configs, sample_build, tmp_path):
    """No traceback and no usage dump from the real processes: the usage error, a config bomb, a
    Hub id that cannot be reached (one request, no retry warnings) and one not cached offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    cases = [
        (run_script("train_dpo.py", "--foo"), "error: train_dpo.py: unrecognized arguments: --foo"),
        (run_script("train_dpo.py", "--config", str(configs / "bomb.yaml"), *DATA), "bomb.yaml: expands to more"),
        (run_script("score.py", "--foo"), "error: score.py: unrecognized arguments: --foo"),
        (subprocess.run([sys.executable, str(ROOT / "baselines" / "train_dpo.py"), *DATA, "--use_cpu",
                         "--model_name_or_path", "Org/Unreachable"], capture_output=True, text=True, timeout=300,
                        env={**env, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}),
         "error: --model_name_or_path Org/Unreachable: no such folder, and the Hugging Face Hub cannot be reached"),
        (run_script("score.py", str(sample_build.out), "--model", "Org/NotCached", "--out", str(tmp_path / "run"),
                    HF_HUB_OFFLINE="1"),
         "error: --model Org/NotCached: no such folder, and not in the Hugging Face cache (HF_HUB_OFFLINE is set)"),
    ]
    for out, expected in cases:
        assert out.returncode == 2 and "Traceback" not in out.stderr and "Retry" not in out.stderr, out.stderr
        errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and expected in errors[0], out.stderr
        assert not [line for line in out.stderr.splitlines() if line.startswith(("usage:", "WARNING"))], out.stderr


def test_trust_remote_code_reaches_the_model_loader(monkeypatch, tiny_model, sample_build, tmp_path):
    from finer_datasets.eval import engines

    seen = []

    def loader(name, **kwargs):
        seen.append((Path(name).name, kwargs.get("trust_remote_code")))
        raise UsageError("stop here")

    monkeypatch.setattr(engines, "load_pretrained", loader)
    assert train_dpo.cli([*DATA, "--use_cpu", "--model_name_or_path", str(tiny_model), "--trust_remote_code",
                          "--output_dir", str(tmp_path / "o")]) == 2
    assert score_script.cli([str(sample_build.out), "--model", str(tiny_model), "--trust-remote-code", "--limit", "1",
                             "--device", "cpu", "--out", str(tmp_path / "run")]) == 2
    assert train_dpo.cli([*DATA, "--use_cpu", "--model_name_or_path", str(tiny_model), "--output_dir",
                          str(tmp_path / "o2")]) == 2
    assert seen == [("tiny-vlm", True), ("tiny-vlm", True), ("tiny-vlm", False)]
