"""``load_finer(folder, "trl")`` is what ``trl.DPOTrainer`` takes unchanged: 2 DPO steps of a tiny
offline LLaVA with LoRA on q_proj/v_proj (paper, Table 10) on the built sample."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from finer_datasets.hub.load import load_finer
from test_tuning_build import build_tuning, records


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tuning(tmp_path_factory.mktemp("trl") / "sample").out


def test_the_trl_view_has_one_row_per_selected_tuple_with_its_image(built):
    ds = load_finer(str(built), "trl", split="train")
    manifest = json.loads((built / "manifest.json").read_text())
    selected = {t["id"]: r for r in records(built) for t in r["tuples"]}
    assert len(ds) == manifest["counts"]["tuples"]["by_split"]["train"] and set(ds["id"]) <= set(selected)
    row = ds[0]
    assert set(row) == {"images", "prompt", "chosen", "rejected", "subset", "query_type", "id", "granularity"}
    assert len(row["images"]) == 1 and isinstance(row["images"][0], Image.Image)
    assert [c["type"] for c in row["prompt"][0]["content"]] == ["image", "text"]
    assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
    png = [i for i, tuple_id in enumerate(ds["id"]) if selected[tuple_id]["source"]["stored_as"] == "png"]
    assert png and all(ds[i]["images"][0].format == "PNG" for i in png)  # a mixed JPEG/PNG build


def test_the_trl_view_lists_one_declared_image_per_tuple(built):
    import datasets

    trl = load_finer(str(built), "trl", split="train")
    assert trl.features["images"] == datasets.List(datasets.Image())
    assert trl.select_columns(["images", "prompt"])[0]["images"][0].size[0] > 0


def test_the_streaming_trl_view_carries_jpeg_and_png_images(built):
    stream = load_finer(str(built), "trl", split="train", streaming=True)
    formats = {row["images"][0].format for row in stream}
    assert formats == {"JPEG", "PNG"}


def test_two_dpo_steps_of_a_tiny_vlm_run_on_the_trl_view(built, tmp_path):
    check_two_dpo_steps(load_finer(str(built), "trl", split="train"), tmp_path)


def check_two_dpo_steps(ds, tmp_path) -> None:
    """Two DPO steps of the tiny LLaVA with LoRA on ``ds`` (a ``Dataset`` or ``IterableDataset``):
    finite losses, log 2 at the first step, and a policy that moved."""
    pytest.importorskip("trl", reason="trl is not installed (pip install trl)")
    pytest.importorskip("peft", reason="peft is not installed (pip install peft)")
    from peft import LoraConfig
    from tiny_vlm import tiny_llava
    from trl import DPOConfig, DPOTrainer

    model, processor = tiny_llava()
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
                     beta=0.1, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, max_length=256)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=processor,
                         peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 2 and len(logs) == 2
    assert all(math.isfinite(entry["loss"]) for entry in logs)
    assert logs[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    assert logs[1]["rewards/margins"] != 0.0  # the LoRA update moved the policy
