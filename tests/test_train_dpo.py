"""baselines/train_dpo.py and finer_datasets.train on the tiny offline VLMs, CPU only.

End to end: 3 DPO steps on the FINER-Tuning sample tuples (tests/fixtures/tuning_trl), finite loss,
the reward margin grows, the adapter is saved and loads back, and baselines/score.py scores the
trained model on the bundled FINER-CompreCap sample, built once per session (conftest ``sample_build``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from finer_datasets.errors import SourceError, UsageError
from finer_datasets.train import data as train_data
from finer_datasets.train.data import load_tuples_jsonl, render_texts
from finer_datasets.train.fast_dpo import PackedPolicy

from tiny_vlm import tiny_llava, tiny_qwen25_vl_processor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "baselines"))
import train_dpo  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "tuning_trl"
TUPLES = FIXTURE / "tuples.jsonl"


def cli(tmp_path: Path, *extra: str) -> list[str]:
    return ["--dataset", str(TUPLES), "--output_dir", str(tmp_path / "out"), "--use_peft", "true", "--lora_r", "8",
            "--lora_alpha", "16", "--lora_dropout", "0.0", "--lora_target_modules", "q_proj", "v_proj",
            "--per_device_train_batch_size", "4", "--max_steps", "3", "--learning_rate", "2e-2", "--beta", "0.1",
            "--bf16", "false", "--use_cpu", "true", "--report_to", "none", "--logging_steps", "1",
            "--save_strategy", "no", "--val_ratio", "0", "--seed", "0", "--max_length", "512",
            "--activation_checkpointing", "false", *extra]


# -- data ---------------------------------------------------------------------------------------------

def test_fixture_tuples_load():
    ds = load_tuples_jsonl(TUPLES)
    assert ds.num_rows == 8
    assert ds.column_names == ["images", "prompt", "chosen", "rejected", "subset", "query_type"]
    row = ds[1]
    assert row["images"][0].size == (32, 32)
    assert row["prompt"][0]["content"][0]["type"] == "image"
    assert row["chosen"][0]["content"][0]["text"].startswith("No, but")  # a negative query
    assert sorted(set(ds["subset"])) == ["attr", "obj", "rel", "wh"]


def _line(**change):
    row = json.loads(TUPLES.read_text().splitlines()[0])
    row.update(change)
    return json.dumps({k: v for k, v in row.items() if v is not None})


@pytest.mark.parametrize("bad, field", [
    ("{not json", None),
    ("[1, 2]", None),
    (_line(chosen=None), "chosen"),
    (_line(images=["images/kitchen.png", "images/desk.png"]), "images"),
    (_line(images=["images/nowhere.png"]), "images"),
    (_line(images=[3]), "images"),
    (_line(rejected=[{"role": "user", "content": "No."}]), "rejected"),
    (_line(prompt=[{"role": "user", "content": [{"type": "video"}]}]), "prompt"),
    (_line(prompt=[{"role": "user", "content": [{"type": "text", "text": 3}]}]), "prompt"),
    (_line(prompt=[{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}]), "prompt"),
    (_line(prompt=[]), "prompt"),
])
def test_bad_tuple_lines_are_located(tmp_path, bad, field):
    (tmp_path / "images").symlink_to(FIXTURE / "images")
    path = tmp_path / "tuples.jsonl"
    path.write_text(TUPLES.read_text().splitlines()[0] + "\n" + bad + "\n")
    with pytest.raises(SourceError) as e:
        load_tuples_jsonl(path)
    assert str(path) in str(e.value) and "line 2" in str(e.value)
    assert e.value.field == field and e.value.exit_code == 2


def test_empty_missing_and_inconsistent_files(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_tuples_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SourceError, match="no tuples"):
        load_tuples_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "images").symlink_to(FIXTURE / "images")
    lines = TUPLES.read_text().splitlines()
    (tmp_path / "mixed.jsonl").write_text(lines[0] + "\n" + _line(subset=None) + "\n")
    with pytest.raises(SourceError, match="same optional columns"):
        load_tuples_jsonl(tmp_path / "mixed.jsonl")


@pytest.mark.parametrize("build", [tiny_llava, tiny_qwen25_vl_processor])
def test_rendering_matches_trl(build):
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    _, processor = build()
    for example in load_tuples_jsonl(TUPLES):
        ours = render_texts(processor, example)
        theirs = apply_chat_template({"prompt": prepare_multimodal_messages(example["prompt"], example["images"]),
                                      "chosen": prepare_multimodal_messages(example["chosen"]),
                                      "rejected": prepare_multimodal_messages(example["rejected"])}, processor)
        assert ours == (theirs["prompt"], theirs["chosen"], theirs["rejected"])


def test_prompt_longer_than_max_length_is_refused():
    _, processor = tiny_llava()
    example = load_tuples_jsonl(TUPLES)[0]
    with pytest.raises(UsageError, match="max_length"):
        train_data.encode_batch(processor, [example], max_length=10, rows=[5])
    cut = train_data.encode_batch(processor, [example], max_length=40, rows=[5]).tuples[0]
    assert len(cut.prompt_ids) + len(cut.chosen_ids) == 40 == len(cut.prompt_ids) + len(cut.rejected_ids)


def test_filters_subsample_and_validation_split(tmp_path):
    args, _, _ = train_dpo.parse_args(cli(tmp_path, "--subsets", "obj", "wh", "--query_types", "negative"))
    train, val = train_dpo.load_tuples(args, seed=0)
    assert sorted(zip(train["subset"], train["query_type"])) == [("obj", "negative"), ("wh", "negative")]
    assert val is None
    args, _, _ = train_dpo.parse_args(cli(tmp_path, "--max_train_samples", "6", "--val_ratio", "0.2"))
    train, val = train_dpo.load_tuples(args, seed=0)
    again, _ = train_dpo.load_tuples(args, seed=0)
    assert (train.num_rows, val.num_rows) == (5, 1) and train["chosen"] == again["chosen"]
    for bad, message in ((["--subsets", "colour"], "invalid choice: 'colour'"),
                         (["--query_types", "neutral"], "invalid choice: 'neutral'")):
        with pytest.raises(UsageError, match=message):  # refused while parsing, before any data is read
            train_dpo.parse_args(cli(tmp_path, *bad))
    args, _, _ = train_dpo.parse_args(cli(tmp_path))
    args.subsets = ["colour"]  # the same check for arguments built in code
    with pytest.raises(UsageError, match="unknown"):
        train_dpo.load_tuples(args, seed=0)


def test_missing_filter_column(tmp_path):
    lines = [json.loads(line) for line in TUPLES.read_text().splitlines()]
    (tmp_path / "images").symlink_to(FIXTURE / "images")
    (tmp_path / "plain.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "subset"}) + "\n"
                                                  for r in lines))
    args, _, _ = train_dpo.parse_args(cli(tmp_path, "--subsets", "obj"))
    args.dataset = str(tmp_path / "plain.jsonl")
    with pytest.raises(UsageError, match="'subset' column"):
        train_dpo.load_tuples(args, seed=0)


# -- options and presets ------------------------------------------------------------------------------

def test_help_documents_every_option():
    from trl import DPOConfig, ModelConfig, TrlParser

    parser = TrlParser((train_dpo.ScriptArguments, DPOConfig, ModelConfig))
    undocumented = [a.dest for a in parser._actions if not (a.help and a.help.strip())]
    assert undocumented == []
    out = subprocess.run([sys.executable, str(ROOT / "baselines" / "train_dpo.py"), "--help"], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    for name in train_dpo.ScriptArguments.__dataclass_fields__:
        assert f"--{name}" in out.stdout, name
    for name in ("--beta", "--loss_type", "--learning_rate", "--lora_r", "--lora_target_modules", "--max_length"):
        assert name in out.stdout


PRESETS = sorted((ROOT / "baselines" / "configs").glob("*.yaml"))
TRAINING_PRESETS = [p for p in PRESETS if not p.name.startswith(("accelerate", "deepspeed"))]


#: the authors' released LLaMA-Factory configs (github.com/ExplainableML/finer, train/LlamaFactory/examples/
#: train_lora/*_lora_finer_tuning.yaml): cutoff_len per model and image_max_pixels 262144 for all
CUTOFF = {"llava-1.6-7b": 4096}


@pytest.mark.parametrize("preset", TRAINING_PRESETS, ids=lambda p: p.stem)
def test_presets_follow_table_10(preset, tmp_path, caplog):
    import yaml

    raw = yaml.safe_load(preset.read_text())
    assert raw["bf16"] is True and raw["dtype"] == "bfloat16"  # as the authors trained; float32 only on a CPU
    with caplog.at_level("WARNING", logger="finer.train_dpo"):
        args, training, model = train_dpo.parse_args(["--config", str(preset), "--dataset", str(TUPLES), "--use_cpu"])
    assert [r.getMessage() for r in caplog.records] == [
        "--use_cpu: training in float32 instead of bfloat16 (bf16: false, dtype: float32)"]
    assert not training.bf16 and model.dtype == "float32"
    assert training.max_length == CUTOFF.get(preset.stem, 512) and args.image_max_pixels == 262144
    sft = "sft" in preset.stem
    assert training.learning_rate == (1e-4 if sft else 5e-6)
    assert training.loss_type == (["sft"] if sft else ["sigmoid"]) and training.beta == 0.1
    assert (model.lora_r, model.lora_target_modules, model.use_peft) == (32, ["q_proj", "v_proj"], True)
    assert (training.num_train_epochs, training.lr_scheduler_type.value, training.warmup_steps) == (1, "cosine", 0.1)
    assert args.global_batch_size == 64 and args.val_ratio == 0.005
    expected = {"llava-1.6-7b": 40000, "qwen2.5-vl-7b": 120000}.get(preset.stem, 160000)
    assert args.max_train_samples == expected
    if preset.stem.startswith("table4") and "negative" in preset.stem:
        assert args.query_types == ["negative"]


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.name.startswith(("accelerate", "deepspeed"))],
                         ids=lambda p: p.stem)
def test_launch_configs_parse(preset):
    import yaml

    config = yaml.safe_load(preset.read_text())
    assert config["distributed_type"] in ("MULTI_GPU", "DEEPSPEED")
    if config["distributed_type"] == "DEEPSPEED":
        assert config["deepspeed_config"]["zero_stage"] == int(preset.stem[-1])


# -- training end to end ------------------------------------------------------------------------------

def _margin(peft_model, processor, beta=0.1) -> float:
    """Mean DPO reward margin of the policy over all fixture tuples."""
    from finer_datasets.train.trainer import PackedCollator

    ds = load_tuples_jsonl(TUPLES)
    collator = PackedCollator(processor, max_length=512, pad_id=processor.tokenizer.pad_token_id)
    with torch.no_grad():
        out = PackedPolicy(peft_model).eval()(with_reference=True, **collator.collate(list(ds), range(ds.num_rows)))
    margins = beta * ((out["chosen_logps"] - out["ref_chosen_logps"]) - (out["rejected_logps"] - out["ref_rejected_logps"]))
    return margins.mean().item()


def test_fast_training_end_to_end_with_scoring(tmp_path, sample_build):
    from peft import PeftModel

    model, processor = tiny_llava()
    argv = cli(tmp_path, "--fast", "--eval", "compre_cap", "--eval_dataset", str(sample_build.out), "--eval_limit", "2")
    report = train_dpo.main(*train_dpo.parse_args(argv), model=model, processor=processor)
    out = tmp_path / "out"
    losses = [h["loss"] for h in report["history"]]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert abs(losses[0] - math.log(2)) < 1e-6  # step 1: policy == reference
    # the adapter is saved and loads back onto a fresh copy of the base model: the trained LoRA weights
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    fresh, _ = tiny_llava()
    loaded = PeftModel.from_pretrained(fresh, out)
    trained = {n: p for n, p in model.named_parameters() if "lora_" in n}  # LoRA was injected in place
    restored = {n.removeprefix("base_model.model."): p for n, p in loaded.named_parameters() if "lora_" in n}
    assert len(trained) == 8 and trained.keys() == restored.keys()
    assert all(torch.equal(trained[n], restored[n]) for n in trained)
    assert _margin(loaded, processor) > 0.01  # the reward margin grew from exactly 0
    # the reference cache was written once, with no temporary or progress file left behind
    assert [p.name for p in (out / "reference").iterdir()] == [next((out / "reference").glob("ref-logps-*.pt")).name]
    # scored by baselines/score.py into one report
    saved = json.loads((out / "report.json").read_text())
    assert saved["trainer"] == "fast (packed)" and saved["train"]["steps"] == 3
    assert set(saved["eval"]["settings"]) == {"multi_obj", "multi_attr", "multi_rel", "wh"}
    assert all(s["n_pairs"] == 2 for s in saved["eval"]["settings"].values())
    predictions = (out / "eval-compre_cap" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 16 and "paired accuracy" in (out / "report.md").read_text()


@pytest.mark.parametrize("build", [tiny_llava, tiny_qwen25_vl_processor], ids=["llava", "qwen2.5-vl"])
def test_fast_and_trl_training_agree(tmp_path, build):
    """Three optimiser steps: the packed trainer follows TRL's trajectory (same loss and margins)."""
    runs, evals = {}, {}
    validation = ["--val_ratio", "0.25", "--eval_strategy", "steps", "--eval_steps", "3"]  # 6 train, 2 validation
    for mode in ("trl", "fast"):
        model, processor = build()
        argv = cli(tmp_path / mode, *validation, *(["--fast", "--reference", "inline"]
                                                   if mode == "fast" and build is tiny_llava
                                                   else ["--fast"] if mode == "fast" else []))
        report = train_dpo.main(*train_dpo.parse_args(argv), model=model, processor=processor)
        runs[mode], evals[mode] = report["history"], report["eval_history"]
    assert runs["trl"][-1]["rewards/margins"] != 0
    for trl_log, fast_log in zip(runs["trl"], runs["fast"], strict=True):
        for key in ("loss", "rewards/margins", "rewards/chosen", "logps/chosen", "logps/rejected", "grad_norm"):
            assert abs(trl_log[key] - fast_log[key]) <= 1e-4 * max(1.0, abs(trl_log[key])), (key, trl_log, fast_log)
    assert len(evals["fast"]) == 1 and abs(evals["fast"][0]["eval_loss"] - math.log(2)) > 1e-4
    for key in ("eval_loss", "eval_rewards/margins", "eval_logps/chosen"):  # validation: reference in the step
        assert abs(evals["trl"][0][key] - evals["fast"][0][key]) <= 1e-4 * max(1.0, abs(evals["trl"][0][key])), key


def test_fast_rejects_what_it_does_not_implement(tmp_path):
    for extra, message in ((["--loss_type", "robust"], "loss_type"), (["--use_weighting", "true"], "use_weighting"),
                           (["--global_batch_size", "6"], "global_batch_size")):
        model, processor = tiny_llava()
        with pytest.raises(UsageError, match=message):
            train_dpo.main(*train_dpo.parse_args(cli(tmp_path, "--fast", *extra)), model=model, processor=processor)


def test_script_exits_with_one_line_error(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "baselines" / "train_dpo.py"), "--dataset",
                          str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path / "o"), "--use_cpu", "true",
                          "--bf16", "false"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "error: --dataset" in out.stderr and "no such file" in out.stderr and "Traceback" not in out.stderr


def test_bench_runs_on_cpu_with_tiny_arch():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "dpo.py"), "--arch", "tiny", "--steps", "1",
                          "--image-tokens", "16", "--prompt-tokens", "12", "--answer-tokens", "4", "--batch", "2"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RATIO fast end to end (cache) / TRL layout" in out.stdout and "CPU / tiny-model figure" in out.stdout
    assert sum(line.endswith("tuples/s") for line in out.stdout.splitlines()) == 7


RUNNER = """
import json, os, sys
sys.path[:0] = [{tests!r}, {baselines!r}]
import train_dpo
from tiny_vlm import tiny_llava
argv = json.loads(sys.argv[1])
model, processor = tiny_llava()
report = train_dpo.main(*train_dpo.parse_args(argv), model=model, processor=processor)
from accelerate import PartialState
rank = PartialState().process_index
with open(os.path.join(sys.argv[2], f"history-{{rank}}.json"), "w") as f:
    json.dump(report["history"], f)
"""


@pytest.mark.slow
def test_two_process_ddp_fast_equals_trl(tmp_path):
    """Two CPU processes under DDP (``torch.distributed.run``, what ``accelerate launch`` starts; gloo on
    127.0.0.1): the unchanged script runs the packed trainer (reference pass shared out and gathered,
    gradients all-reduced) and follows TRL's trajectory."""
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER.format(tests=str(Path(__file__).parent), baselines=str(ROOT / "baselines")))
    histories = {}
    for mode in ("trl", "fast"):
        argv = cli(tmp_path / mode, "--per_device_train_batch_size", "2", *(["--fast"] if mode == "fast" else []))
        out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                              "--master_addr", "127.0.0.1", "--master_port", "29517", str(runner), json.dumps(argv),
                              str(tmp_path)],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "MASTER_ADDR": "127.0.0.1"})
        assert out.returncode == 0, out.stderr[-3000:]
        histories[mode] = [json.loads((tmp_path / f"history-{r}.json").read_text()) for r in (0, 1)]
    assert len(histories["fast"][0]) == 3
    for trl_log, fast_log in zip(histories["trl"][0], histories["fast"][0], strict=True):
        for key in ("loss", "grad_norm", "rewards/margins"):
            assert abs(trl_log[key] - fast_log[key]) <= 1e-4 * max(1.0, abs(trl_log[key])), (key, trl_log, fast_log)
    assert histories["fast"][0][-1]["loss"] == histories["fast"][1][-1]["loss"]  # metrics are gathered
    assert len(list((tmp_path / "fast" / "out" / "reference").glob("ref-logps-*.pt"))) == 1


def test_fast_run_resumes_from_its_checkpoint(tmp_path):
    """A run stopped after step 2 and resumed from checkpoint-2 ends where the uninterrupted run does."""
    whole = train_dpo.main(*train_dpo.parse_args(cli(tmp_path / "whole", "--fast")), model=tiny_llava()[0],
                           processor=tiny_llava()[1])["history"]
    first = cli(tmp_path / "cut", "--fast", "--save_strategy", "steps", "--save_steps", "2")
    train_dpo.main(*train_dpo.parse_args(first), model=tiny_llava()[0], processor=tiny_llava()[1])
    checkpoint = tmp_path / "cut" / "out" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").exists() and (checkpoint / "optimizer.pt").exists()
    resumed = train_dpo.main(*train_dpo.parse_args(first + ["--resume_from_checkpoint", str(checkpoint)]),
                             model=tiny_llava()[0], processor=tiny_llava()[1])["history"]
    assert [h["step"] for h in resumed] == [1, 2, 3]  # steps 1-2 come from the checkpoint's trainer state
    assert abs(resumed[2]["loss"] - whole[2]["loss"]) < 1e-6 and abs(resumed[2]["loss"] - math.log(2)) > 1e-4
    with pytest.raises(UsageError, match="adapter_model.safetensors"):
        train_dpo.main(*train_dpo.parse_args(first + ["--resume_from_checkpoint", str(tmp_path)]),
                       model=tiny_llava()[0], processor=tiny_llava()[1])


def test_trains_on_the_finer_tuning_trl_view(tmp_path):
    """The builder's TRL view (``load_finer(folder, view="trl")``) feeds both trainers unchanged; its
    own validation split is used; the filters apply to both splits."""
    from test_tuning_build import build_tuning

    folder = build_tuning(tmp_path / "tuning").out
    histories = {}
    for mode in ("trl", "fast"):
        argv = cli(tmp_path / mode, "--subsets", "obj", "rel", "--max_steps", "2", "--max_length", "1024",
                   *(["--fast"] if mode == "fast" else []))
        argv[argv.index("--dataset") + 1] = str(folder)
        report = train_dpo.main(*train_dpo.parse_args(argv), model=tiny_llava()[0], processor=tiny_llava()[1])
        histories[mode] = report["history"]
        assert report["validation_tuples"] > 0 and report["train_tuples"] > report["validation_tuples"]
    for trl_log, fast_log in zip(histories["trl"], histories["fast"], strict=True):
        assert abs(trl_log["loss"] - fast_log["loss"]) <= 1e-5 and math.isfinite(fast_log["loss"])


# -- image pixel cap (LLaMA-Factory's image_max_pixels) and precision on the CPU ----------------------

def test_cap_pixels_keeps_the_aspect_ratio():
    from PIL import Image

    from finer_datasets.train.data import cap_pixels

    wide = Image.new("RGB", (1000, 500))
    assert cap_pixels(wide, 262144).size == (724, 362)  # sqrt(262144 / 500000) = 0.724...; 724 x 362 <= 262144
    assert cap_pixels(wide, None) is wide and cap_pixels(wide, 500000) is wide
    assert cap_pixels(Image.new("RGB", (3, 4000)), 100).size == (1, 100)  # never above the cap, even at 1 pixel wide
    assert cap_pixels(Image.new("RGB", (4000, 3)), 100).size == (100, 1)


def _shrunk(example, max_pixels):
    from finer_datasets.train.data import cap_pixels

    return {**example, "images": [cap_pixels(img, max_pixels) for img in example["images"]]}


@pytest.mark.parametrize("build", [tiny_llava, tiny_qwen25_vl_processor], ids=["llava", "qwen2.5-vl"])
def test_both_trainers_see_capped_images(build):
    """The fixture's 32x32 images capped at 256 pixels (16x16): TRL's collator behind
    PixelCapCollator and the packed collator both give the pixel values of pre-shrunk images."""
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    from finer_datasets.train.data import PixelCapCollator
    from finer_datasets.train.trainer import PackedCollator

    _, processor = build()
    examples = [dict(load_tuples_jsonl(TUPLES)[i]) for i in range(2)]
    trl = DataCollatorForVisionPreference(processor=processor)
    capped = PixelCapCollator(trl, 256)([dict(e) for e in examples])["pixel_values"]
    assert torch.equal(capped, trl([_shrunk(e, 256) for e in examples])["pixel_values"])
    assert not torch.equal(capped, trl([dict(e) for e in examples])["pixel_values"])
    pad = processor.tokenizer.pad_token_id
    fast = PackedCollator(processor, max_length=512, pad_id=pad, max_pixels=256).collate(examples, [0, 1])
    plain = PackedCollator(processor, max_length=512, pad_id=pad).collate([_shrunk(e, 256) for e in examples], [0, 1])
    assert torch.equal(fast["pixel_values"], plain["pixel_values"])


@pytest.mark.parametrize("fast", [False, True], ids=["trl", "fast"])
def test_train_wires_the_cap_into_either_trainer(tmp_path, fast):
    from finer_datasets.train.data import PixelCapCollator

    args = train_dpo.parse_args(cli(tmp_path, "--image_max_pixels", "256", "--max_steps", "1",
                                    *(["--fast"] if fast else [])))
    train, val = train_dpo.load_tuples(args[0], seed=0)
    model, processor = tiny_llava()
    trainer = train_dpo.train(*args, model, processor, train, val)
    if fast:
        assert trainer.collator.max_pixels == 256
    else:
        assert isinstance(trainer.data_collator, PixelCapCollator) and trainer.data_collator.max_pixels == 256


def test_precision_fits_the_device(caplog):
    from argparse import Namespace

    from finer_datasets.train.options import fit_precision

    preset = {"bf16": True, "dtype": "bfloat16", "use_cpu": False, "fp16": False}
    with caplog.at_level("WARNING", logger="finer.train_dpo"):
        assert fit_precision(Namespace(**preset), cuda_bf16=True) == []  # a bf16 GPU: the preset as it is
        assert fit_precision(Namespace(**{**preset, "use_cpu": True}), cuda_bf16=True) == ["bf16: false",
                                                                                          "dtype: float32"]
        ns = Namespace(**preset)
        assert fit_precision(ns, cuda_bf16=False) == ["bf16: false", "dtype: float32"]
        assert (ns.bf16, ns.dtype) == (False, "float32")
        unset = Namespace(bf16=None, dtype="float32", use_cpu=False, fp16=False)  # TRL's default, not asked for
        assert fit_precision(unset, cuda_bf16=False) == [] and unset.bf16 is False
    assert [r.getMessage() for r in caplog.records] == [
        "--use_cpu: training in float32 instead of bfloat16 (bf16: false, dtype: float32)",
        "no CUDA device with bfloat16 support: training in float32 instead of bfloat16 (bf16: false, dtype: float32)"]
