"""Margin DPO (an experiment of --fast): -log sigmoid(beta * delta_r - m), m = alpha * g + gamma, g = k.

The loss function against the plain loss at m = 0 and against values computed by hand at m > 0;
the granularity column of the trl view; the options; and a 2-step --fast run of the tiny model
from the command line with the margin on, in subprocesses, as a user runs it (offline)."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from finer_datasets.errors import UsageError
from finer_datasets.preference.records import granularity, trl_rows
from finer_datasets.train.fast_dpo import dpo_loss, instance_margin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "baselines"))
import train_dpo  # noqa: E402

BETA = 0.1
CHOSEN = [-3.0, -5.5, -2.25]
REJECTED = [-4.0, -5.0, -7.5]
REF_CHOSEN = [-3.5, -5.0, -2.0]
REF_REJECTED = [-3.25, -6.0, -7.0]
G = [1.0, 2.0, 4.0]


def tensors(requires_grad=False):
    out = [torch.tensor(v, dtype=torch.float64, requires_grad=requires_grad)
           for v in (CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED)]
    return out


def loss(margin=None, loss_types=("sigmoid",), requires_grad=False):
    chosen, rejected, ref_chosen, ref_rejected = tensors(requires_grad)
    n_tokens = torch.tensor([3, 4, 2, 2, 5, 1])
    value = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=BETA, n_tokens=n_tokens, loss_types=loss_types,
                     margin=margin)
    return value, chosen


def by_hand(alpha, gamma):
    """mean_i log(1 + exp(-(beta * delta_i - m_i))), delta_i = (c_i - rc_i) - (r_i - rr_i), m_i = alpha g_i + gamma."""
    total = 0.0
    for c, r, rc, rr, g in zip(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, G):
        delta = (c - rc) - (r - rr)
        total += math.log1p(math.exp(-(BETA * delta - (alpha * g + gamma))))
    return total / len(G)


def test_zero_margin_is_the_plain_loss():
    plain, chosen_plain = loss(requires_grad=True)
    zero = instance_margin(torch.tensor(G, dtype=torch.float64), 0.0, 0.0)
    margin, chosen_margin = loss(zero, requires_grad=True)
    assert abs(margin.item() - plain.item()) <= 1e-6 and margin.item() == plain.item()
    plain.backward()
    margin.backward()
    assert torch.equal(chosen_plain.grad, chosen_margin.grad)
    assert plain.item() == pytest.approx(by_hand(0.0, 0.0), abs=1e-12)


@pytest.mark.parametrize("alpha, gamma", [(0.5, 0.0), (0.0, 0.3), (0.5, 0.25), (2.0, 1.0)])
def test_margin_matches_the_hand_computed_loss(alpha, gamma):
    m = instance_margin(torch.tensor(G, dtype=torch.float64), alpha, gamma)
    assert m.tolist() == [alpha * g + gamma for g in G]
    value, _ = loss(m)
    assert value.item() == pytest.approx(by_hand(alpha, gamma), abs=1e-9)
    assert value.item() > loss()[0].item()  # a margin always asks for more separation


def test_finer_negatives_weigh_more():
    """Same reward difference, larger k: the gradient on the tuple grows with its margin."""
    chosen = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(3, dtype=torch.float64)
    m = instance_margin(torch.tensor(G, dtype=torch.float64), 0.5, 0.1)
    dpo_loss(chosen, zeros, zeros, zeros, beta=BETA, n_tokens=torch.ones(6), margin=m).backward()
    pull = (-chosen.grad).tolist()  # d loss / d logp(chosen) = -beta * sigmoid(m - beta * delta) / B
    assert pull == pytest.approx([BETA * (1 / (1 + math.exp(-mi))) / 3 for mi in m.tolist()])
    assert pull[0] < pull[1] < pull[2]


def test_the_margin_touches_only_the_sigmoid_term():
    m = instance_margin(torch.tensor(G, dtype=torch.float64), 0.5, 0.25)
    with_sft = loss(m, ("sigmoid", "sft"))[0] - loss(None, ("sigmoid", "sft"))[0]
    alone = loss(m)[0] - loss()[0]
    assert with_sft.item() == pytest.approx(alone.item(), abs=1e-12)
    assert loss(m, ("hinge",))[0].item() == loss(None, ("hinge",))[0].item()


RECORD = {
    "phrases": [{"type": "obj", "items": ["a cat", "a dog", "a ball"]}, {"type": "attr", "items": ["red", "small"]},
                {"type": "rel", "items": ["on the mat"]}],
    "tuples": [{"id": f"k_{t}_pos", "type": t, "query": "positive", "question": "Q?", "chosen": "Yes.", "rejected": "No."}
               for t in ("obj", "attr", "rel", "wh")],
}


def test_granularity_is_k_the_elements_a_tuple_names():
    assert [granularity(RECORD, t) for t in RECORD["tuples"]] == [3, 2, 1, 1]
    assert granularity({"phrases": []}, RECORD["tuples"][0]) == 1  # no phrase of that type
    rows = trl_rows(RECORD)
    assert list(rows[0]) == ["id", "subset", "query_type", "prompt", "chosen", "rejected", "granularity"]
    assert [r["granularity"] for r in rows] == [3, 2, 1, 1]


def test_trainer_refuses_what_it_cannot_do():
    from types import SimpleNamespace

    from finer_datasets.train.trainer import _check_margin

    class Rows:
        column_names = ["images", "prompt", "chosen", "rejected"]

    sigmoid = SimpleNamespace(loss_type=["sigmoid"])
    assert _check_margin(sigmoid, Rows(), 0.0, 0.0) is None
    assert _check_margin(sigmoid, Rows(), 0.0, 0.5) == (0.0, 0.5)  # gamma alone needs no column
    with pytest.raises(UsageError, match="'granularity' column"):
        _check_margin(sigmoid, Rows(), 0.5, 0.0)
    with pytest.raises(UsageError, match="sigmoid"):
        _check_margin(SimpleNamespace(loss_type=["ipo"]), Rows(), 0.0, 0.5)


@pytest.mark.parametrize("extra, message", [
    (["--margin_alpha", "0.5"], "are options of --fast"),
    (["--fast", "--margin_alpha", "-1"], "--margin_alpha must be 0 or more"),
    (["--fast", "--margin_gamma", "x"], "invalid float value"),
])
def test_bad_margin_options_are_one_line(extra, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        train_dpo.parse_args(["--dataset", str(tmp_path), "--output_dir", str(tmp_path / "o"), *extra])
    script_args, _, _ = train_dpo.parse_args(["--dataset", str(tmp_path), "--output_dir", str(tmp_path / "o")])
    assert (script_args.margin_alpha, script_args.margin_gamma) == (0.0, 0.0)  # off by default


ALPHA, GAMMA = 0.5, 0.25
COMMANDS = [
    "python -m finer_datasets.testing.tiny_vlm --out tiny-vlm",
    "finer build tuning --sample --replay sample --out tuning-sample",
    "python baselines/train_dpo.py --config baselines/configs/qwen2.5-vl-7b.yaml --model_name_or_path tiny-vlm "
    "--dataset tuning-sample --output_dir runs/margin --max_steps 2 --max_train_samples 32 --global_batch_size 8 "
    f"--logging_steps 1 --use_cpu --fast --margin_alpha {ALPHA} --margin_gamma {GAMMA}",
]


def argv(line):
    words = shlex.split(line)
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    exe = Path(sys.executable).parent / "finer"
    return [str(exe), *words[1:]] if exe.exists() else [sys.executable, "-m", "finer_datasets.cli", *words[1:]]


def softplus(x):
    return math.log1p(math.exp(x))


def test_two_fast_steps_with_the_margin_from_the_command_line(tmp_path):
    (tmp_path / "baselines").symlink_to(ROOT / "baselines")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    for line in COMMANDS:
        out = subprocess.run(argv(line), cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        assert out.returncode == 0, f"{line}\n{out.stderr[-3000:]}"
        assert "Traceback" not in out.stderr
    from finer_datasets.hub.load import load_finer

    ks = load_finer(str(tmp_path / "tuning-sample"), "trl", split="train")["granularity"]
    assert set(ks) <= {1, 2, 3, 4} and len(set(ks)) > 1
    report = json.loads((tmp_path / "runs" / "margin" / "report.json").read_text())
    assert report["trainer"] == "fast (packed)" and report["train"]["steps"] == 2
    assert (report["script_args"]["margin_alpha"], report["script_args"]["margin_gamma"]) == (ALPHA, GAMMA)
    first = report["history"][0]
    # step 1: the LoRA update is still zero, so the policy is the reference, delta_r = 0 and each
    # tuple's loss is softplus(m_i) with m_i = alpha * k_i + gamma, k_i in 1..4 (plain DPO: log 2)
    low, high = ALPHA * min(ks) + GAMMA, ALPHA * max(ks) + GAMMA
    assert low <= first["margin"] <= high
    assert softplus(low) - 1e-4 <= first["loss"] <= softplus(high) + 1e-4
    assert first["loss"] >= softplus(first["margin"]) - 1e-4  # Jensen: the mean of softplus(m_i)
    assert first["loss"] > math.log(2) + 0.3
    assert abs(first["rewards/margins"]) < 1e-3
