"""DPO training throughput: TRL's layout against the packed step (``--fast``), in one run, same model.

    python bench/dpo.py --arch tiny                 # tiny random Qwen2.5-VL on the CPU (a smoke test of the ratio)
    python bench/dpo.py --arch qwen2.5-vl-7b        # Qwen2.5-VL-7B architecture, random weights, bf16, on a GPU

Speed does not depend on the weights: the model is built from its config with random weights (no
download). Each tuple imitates FINER-Tuning: one image of ``--image-tokens`` vision tokens (352:
a 448x616 image), ``--prompt-tokens`` other prompt tokens and two answers of ``--answer-tokens``.
LoRA r 32 on the language model's q_proj/v_proj, AdamW on the adapter; each row times
forward + backward + optimiser step of ``--batch`` tuples; rows take turns over ``--steps`` rounds
and the best round counts (after a warm-up call each), so load changes hit all rows alike:

* TRL layout: ``trl.DPOTrainer.compute_loss`` itself on its collated layout (chosen and rejected
  as separate sequences, the image repeated): with gradient checkpointing and the reference forward
  (adapter off) in the step; without checkpointing; without the reference forward (log-probs given);
* fast: the reference pass (packed, inference) alone; the packed training step with cached
  reference log-probs; and the packed step computing the reference inline; no checkpointing, with
  the largest micro-batch of 32, 16, ``--batch`` that fits (``--fast-batch`` to fix it).

Printed: tuples/s per row and RATIO fast / TRL layout (first row), end to end: for the cached
pipeline the reference pass is counted (1 / (1/pass + 1/step)). Target on one H100 with the 7B
architecture: >= 8x (>= 12 tuples/s). Where ``trl`` or ``datasets`` cannot be imported (the lent GPU
machine has neither unless their wheels are carried) the TRL rows are skipped with a line saying
so and the fast rows run on a PEFT model made the way ``DPOTrainer`` makes it. ``--json FILE`` also
writes the figures (for ``bench/gpu.sh``'s summary table).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
import warnings

import torch

ARCHS = {
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=1024),
                 vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                             fullatt_block_indexes=[1]),
                 mrope=[2, 3, 3]),
    "qwen2.5-vl-7b": dict(text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                    num_attention_heads=28, num_key_value_heads=4, vocab_size=152064),
                          vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                      out_hidden_size=3584, fullatt_block_indexes=[7, 15, 23, 31]),
                          mrope=[16, 24, 24]),
}


def build(arch: str, device: str, dtype: torch.dtype):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    spec = ARCHS[arch]
    vocab = spec["text"]["vocab_size"]
    ids = {"image": vocab - 4, "video": vocab - 3, "vision_start": vocab - 2, "vision_end": vocab - 1}
    config = Qwen2_5_VLConfig(
        text_config={**spec["text"], "max_position_embeddings": 32768, "bos_token_id": 1, "eos_token_id": 1,
                     "pad_token_id": 0, "rope_parameters": {"rope_type": "default", "mrope_section": spec["mrope"],
                                                            "rope_theta": 1000000.0}},
        vision_config={**spec["vision"], "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "window_size": 112, "in_chans": 3},
        image_token_id=ids["image"], video_token_id=ids["video"],
        vision_start_token_id=ids["vision_start"], vision_end_token_id=ids["vision_end"],
        attn_implementation="sdpa",
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built directly in bf16: no float32 copy of 8B parameters
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model, ids


def make_tuples(model, ids, n: int, image_tokens: int, prompt_tokens: int, answer_tokens: int, seed: int):
    """``n`` FINER-like tuples: (prompt ids, chosen ids, rejected ids, mm token types, pixels, grid)."""
    vision = model.config.vision_config
    merge = vision.spatial_merge_size
    k = max(d for d in range(1, int(image_tokens ** 0.5) + 1) if image_tokens % d == 0)
    grid = [1, k * merge, image_tokens // k * merge]  # exactly image_tokens after the 2x2 merge
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.text_config.vocab_size
    width = vision.in_chans * vision.temporal_patch_size * vision.patch_size ** 2
    head = max(1, prompt_tokens // 6)

    def text(count: int) -> list[int]:
        return torch.randint(10, vocab - 10, (count,), generator=g).tolist()

    out = []
    for _ in range(n):
        prompt = text(head) + [ids["vision_start"]] + [ids["image"]] * image_tokens + [ids["vision_end"]] \
            + text(prompt_tokens - head - 2)
        out.append({"prompt": prompt, "chosen": text(answer_tokens), "rejected": text(answer_tokens),
                    "types": [1 if t == ids["image"] else 0 for t in prompt],
                    "pixels": torch.randn(grid[1] * grid[2], width, generator=g), "grid": grid})
    return out


def trl_batch(tuples, device, dtype):
    """What ``trl.DPOTrainer``'s vision collator produces: chosen rows, then rejected rows."""
    rows = [t["prompt"] + t["chosen"] for t in tuples] + [t["prompt"] + t["rejected"] for t in tuples]
    width = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    completion = torch.zeros_like(input_ids)
    types = torch.zeros_like(input_ids)
    for i, r in enumerate(rows):
        t = tuples[i % len(tuples)]
        input_ids[i, :len(r)] = torch.tensor(r)
        attention[i, :len(r)] = 1
        completion[i, len(t["prompt"]):len(r)] = 1
        types[i, :len(t["prompt"])] = torch.tensor(t["types"])
    pixels = torch.cat([t["pixels"] for t in tuples] * 2)
    grid = torch.tensor([t["grid"] for t in tuples] * 2)
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device),
            "completion_mask": completion.to(device), "mm_token_type_ids": types.to(device),
            "pixel_values": pixels.to(device, dtype), "image_grid_thw": grid.to(device)}


def fast_batch(tuples, device, dtype):
    from finer_datasets.train.data import EncodedBatch, EncodedTuple
    from finer_datasets.train.packing import pack

    encoded = EncodedBatch([EncodedTuple(t["prompt"], t["chosen"], t["rejected"], t["types"], i)
                            for i, t in enumerate(tuples)],
                           {"pixel_values": torch.cat([t["pixels"] for t in tuples]),
                            "image_grid_thw": torch.tensor([t["grid"] for t in tuples])})
    packed = pack(encoded, pad_id=0)
    packed["pixel_values"] = packed["pixel_values"].to(dtype)
    return {k: v.to(device) for k, v in packed.items()}


def trl_trainer(model, batch: int, device: str, out_dir: str):
    """A real ``trl.DPOTrainer`` (LoRA r 32 on the language model's q/v) around ``model``."""
    from datasets import Dataset
    from PIL import Image
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast, ProcessorMixin
    from trl import DPOConfig, DPOTrainer

    class _TokenizerOnly(ProcessorMixin):  # DPOTrainer wants a processor; ids are fed directly here
        def __init__(self, tokenizer=None, chat_template=None):
            super().__init__(tokenizer, chat_template=chat_template)

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0, "</s>": 1}, "<pad>")),
                                  pad_token="<pad>", eos_token="</s>")
    data = Dataset.from_dict({"images": [[Image.new("RGB", (28, 28))]], "prompt": ["q"], "chosen": ["a"],
                              "rejected": ["b"]})
    args = DPOConfig(output_dir=out_dir, per_device_train_batch_size=batch, report_to=[], beta=0.1,
                     bf16=device.startswith("cuda"), use_cpu=not device.startswith("cuda"), max_length=None,
                     activation_checkpointing=False)  # switched on for the first row only
    return DPOTrainer(model=model, args=args, train_dataset=data, processing_class=_TokenizerOnly(tok),
                      peft_config=lora_config())


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, target_modules=r".*language_model.*\.(q_proj|v_proj)")


def trl_missing() -> str | None:
    """Why the TRL layout cannot be measured here (``trl`` or ``datasets`` not importable), or None."""
    for name in ("trl", "datasets"):
        try:
            __import__(name)
        except ImportError as exc:
            if isinstance(exc, ModuleNotFoundError) and exc.name == name:
                return f"{name} not installed"
            return f"{name} cannot be imported ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
    return None


def interleaved(steps: dict, rounds: int, device: str) -> dict[str, float]:
    """Best seconds per call of each step, over ``rounds`` rounds that run every step once in turn
    (after one warm-up call each): a load change on a shared machine hits all rows alike. A step
    that runs out of accelerator memory is dropped (``inf``) and the others go on."""
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def attempt(name: str) -> float:
        sync()
        start = time.perf_counter()
        try:
            steps[name]()
        except torch.cuda.OutOfMemoryError:
            print(f"{name}: out of memory, row skipped", file=sys.stderr)
            steps[name] = None
            torch.cuda.empty_cache()
            return float("inf")
        sync()
        return time.perf_counter() - start

    best = {name: float("inf") for name in steps}
    for name in list(steps):
        attempt(name)
    for _ in range(rounds):
        for name in list(steps):
            if steps[name] is not None:
                best[name] = min(best[name], attempt(name))
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    p.add_argument("--image-tokens", type=int, default=352)
    p.add_argument("--prompt-tokens", type=int, default=62, help="prompt tokens besides the image tokens")
    p.add_argument("--answer-tokens", type=int, default=30)
    p.add_argument("--batch", type=int, default=8, help="tuples per step (TRL layout)")
    p.add_argument("--fast-batch", type=int, default=None,
                   help="tuples per packed step (default: on CUDA the largest of 32, 16, --batch that fits "
                        "without checkpointing, as train_dpo.py --fast picks it; else --batch)")
    p.add_argument("--steps", type=int, default=5, help="timed rounds (each row once per round, best kept)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # before the first CUDA allocation
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from finer_datasets.train.fast_dpo import PackedPolicy, dpo_loss

    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    candidates = [args.fast_batch] if args.fast_batch else sorted({32, 16, args.batch} if cuda else {args.batch},
                                                                    reverse=True)
    torch.manual_seed(0)
    model, ids = build(args.arch, args.device, dtype)
    tuples = make_tuples(model, ids, max(args.batch, *candidates), args.image_tokens, args.prompt_tokens,
                         args.answer_tokens, seed=0)
    missing = trl_missing()
    if missing is None:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = trl_trainer(model, args.batch, args.device, tmp)
        peft_model, context = trainer.model, trainer.compute_loss_context_manager
    else:  # no TRL here: the fast rows alone, on the PEFT model DPOTrainer would make
        from peft import get_peft_model

        print(f"TRL layout rows skipped: {missing}; carry its wheels to measure them (bench/README.md)")
        trainer, peft_model, context = None, get_peft_model(model, lora_config()), contextlib.nullcontext
    params = [q for q in peft_model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-6)
    tb = trl_batch(tuples[:args.batch], args.device, dtype)
    policy = PackedPolicy(peft_model).train()
    base = peft_model.get_base_model()

    def trl_step(precomputed: bool):
        def step():
            trainer.precompute_ref_logps = precomputed
            batch = dict(tb, ref_chosen_logps=torch.zeros(args.batch, device=args.device),
                         ref_rejected_logps=torch.zeros(args.batch, device=args.device)) if precomputed else tb
            with trainer.compute_loss_context_manager():
                loss = trainer.compute_loss(peft_model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    fast: dict = {}

    def fast_train(inline: bool):
        def step():
            batch, fast_n = fast["batch"], fast["n"]
            with context():
                out = policy(with_reference=inline, **batch)
                ref_c = out["ref_chosen_logps"] if inline else torch.zeros(fast_n, device=args.device)
                ref_r = out["ref_rejected_logps"] if inline else torch.zeros(fast_n, device=args.device)
                loss = dpo_loss(out["chosen_logps"], out["rejected_logps"], ref_c, ref_r, beta=0.1,
                                n_tokens=batch["n_tokens"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    def reference_pass():
        with torch.no_grad(), context():
            policy(with_policy=False, with_reference=True, **fast["batch"])

    for n in candidates:  # the largest micro-batch whose packed step (reference inline: the larger one) fits
        fast.update(n=n, batch=fast_batch(tuples[:n], args.device, dtype))
        try:
            fast_train(True)()
            break
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            fast.clear()
            torch.cuda.empty_cache()
    if not fast:
        print("the packed step does not fit even with the smallest micro-batch", file=sys.stderr)
        return 1
    fast_n = fast["n"]

    def with_checkpointing(step):
        def run():  # what DPOTrainer + Trainer do with gradient_checkpointing=True (TRL's default)
            peft_model.enable_input_require_grads()
            base.activation_checkpointing_enable(trainer.args.activation_checkpointing_kwargs)
            try:
                step()
            finally:
                base.gradient_checkpointing_disable()
                peft_model.disable_input_require_grads()
        return run

    peft_model.train()
    rows = {"ref_pass": reference_pass, "fast_step": fast_train(False), "fast_inline": fast_train(True)}
    if trainer is not None:
        rows = {"trl_ckpt": with_checkpointing(trl_step(False)), "trl": trl_step(False), "trl_noref": trl_step(True),
                **rows}
    seconds = interleaved(rows, args.steps, args.device)
    rate = {name: (args.batch if name.startswith("trl") else fast_n) / t for name, t in seconds.items()}
    rate["fast_cached_e2e"] = 1 / (1 / rate["ref_pass"] + 1 / rate["fast_step"]) if min(rate.values()) > 0 else 0.0
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    label = "" if cuda and args.arch != "tiny" else "   [CPU / tiny-model figure: not the GPU target]"
    print(f"arch {args.arch} on {device_name} ({dtype}); {args.image_tokens} image + {args.prompt_tokens} prompt + "
          f"2x{args.answer_tokens} answer tokens; batch {args.batch} (fast {fast_n}); LoRA r32 q/v")

    def show(text: str, name: str) -> None:
        value = f"{rate[name]:8.2f} tuples/s" if name in rate else f"skipped ({missing})"
        print(f"{text:<63}{value}")

    show("TRL layout, gradient checkpointing, reference forward in step:", "trl_ckpt")
    show("TRL layout, no checkpointing, reference forward in step:", "trl")
    show("TRL layout, no checkpointing, reference log-probs given:", "trl_noref")
    show("fast: reference pass (packed inference):", "ref_pass")
    show("fast: packed step, cached reference:", "fast_step")
    show("fast: end to end, reference pass + step (--reference cache):", "fast_cached_e2e")
    show("fast: packed step, reference inline (--reference inline):", "fast_inline")

    def ratio(a: str) -> str:
        return f"{rate[a] / rate['trl_ckpt']:.1f}x" if rate.get("trl_ckpt") else "n/a"

    print(f"RATIO fast end to end (cache) / TRL layout = {ratio('fast_cached_e2e')}; "
          f"inline / TRL layout = {ratio('fast_inline')}  "
          f"(target >= 8x, >= 12 tuples/s on one H100, 7B architecture){label}")
    if args.json:
        from gpu_summary import environment, write_json

        env = environment(args.device)
        env["versions"]["trl"] = None if missing else __import__("trl").__version__
        write_json(args.json, {"arch": args.arch, "env": env, "batch": args.batch,
                               "fast_batch": fast_n, "image_tokens": args.image_tokens,
                               "prompt_tokens": args.prompt_tokens, "answer_tokens": args.answer_tokens,
                               "steps": args.steps, "rates": rate, "trl_skipped": missing})
    return 0


if __name__ == "__main__":
    sys.exit(main())
