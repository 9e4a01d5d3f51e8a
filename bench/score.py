"""Throughput of the ``letters`` engine (prefix reuse) against the ``generate`` engine, in one run.

    python bench/score.py                          # tiny random model on the CPU (a smoke test of the ratio)
    python bench/score.py --arch qwen2.5-vl-7b     # Qwen2.5-VL-7B architecture, random weights, on a GPU

Speed does not depend on the weights, so the real-size architecture is built from its config with
random weights (no download). Inputs imitate a FINER question: one image of ``--image-tokens``
vision tokens (638 for a 616x812 image) and ``--text-tokens`` question tokens. Printed, measured
in the same run on the same model:

* generate: greedy, 3 new tokens, batch 1 (the paper's protocol)   -> MCQ/s
* one forward pass per question, batch 1 (no reuse)                -> MCQ/s
* image prefix prefilled once per ``--per-image`` questions (30: FINER's questions per image),
  ``--batch`` suffixes scored on its KV cache                       -> MCQ/s
* RATIO letters (prefix reuse) / generate (target >= 15x on an H100 with the 7B architecture)
* the device's matmul peak, measured in the same run (``--matmul-size``\ :sup:`3`, bf16 on CUDA,
  float32 on the CPU), the model's forward FLOPs per question (counted by ``FlopCounterMode`` on
  this model and these inputs: the image prefix's forward, shared by ``--per-image`` questions,
  plus the question's forward on its KV cache, logits at the one position read), and each
  engine's share of that roofline (MCQ/s x FLOPs per MCQ / peak). Target on one H100 with the
  7B architecture: letters >= 190 MCQ/s at 30 MCQ/image.

``--json FILE`` also writes the figures (for ``bench/gpu.sh``'s summary table).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

from finer_datasets.eval.engines import (
    cache_keyword,
    full_logits,
    generate_first_token,
    prefix_cache,
    suffix_logits,
)

ARCHS = {
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=1024),
                 vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)),
    "qwen2.5-vl-7b": dict(text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                    num_attention_heads=28, num_key_value_heads=4, vocab_size=152064),
                          vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                      out_hidden_size=3584)),
}


def build(arch: str, device: str, dtype: torch.dtype):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    spec = ARCHS[arch]
    vocab = spec["text"]["vocab_size"]
    ids = {"image": vocab - 4, "video": vocab - 3, "vision_start": vocab - 2, "vision_end": vocab - 1}
    config = Qwen2_5_VLConfig(
        text_config={**spec["text"], "max_position_embeddings": 32768, "bos_token_id": 1, "eos_token_id": 2,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24] if arch != "tiny" else [2, 3, 3],
                                         "rope_theta": 1000000.0}},
        vision_config={**spec["vision"], "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31] if arch != "tiny" else [1], "in_chans": 3},
        image_token_id=ids["image"], video_token_id=ids["video"],
        vision_start_token_id=ids["vision_start"], vision_end_token_id=ids["vision_end"],
    )
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype).eval()
    return model, ids


def inputs(model, ids, image_tokens: int, text_tokens: int, device: str, dtype: torch.dtype, seed: int):
    vision = model.config.vision_config
    merge = vision.spatial_merge_size
    rows = 2 * round((image_tokens * merge * merge) ** 0.5 / 2)  # a grid close to the wanted token count
    cols = max(merge, (image_tokens * merge * merge // rows) // merge * merge)
    grid = torch.tensor([[1, rows, cols]], device=device)
    n_image = rows * cols // merge ** 2
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(rows * cols, vision.in_chans * vision.temporal_patch_size * vision.patch_size ** 2, generator=g)
    vocab = model.config.text_config.vocab_size
    head = torch.randint(10, vocab - 10, (8,), generator=g).tolist()
    prefix_ids = torch.tensor([head + [ids["vision_start"]] + [ids["image"]] * n_image + [ids["vision_end"]]], device=device)
    prefix = {"input_ids": prefix_ids, "attention_mask": torch.ones_like(prefix_ids),
              "pixel_values": pixels.to(device, dtype), "image_grid_thw": grid,
              "mm_token_type_ids": (prefix_ids == ids["image"]).int()}
    suffixes = [torch.randint(10, vocab - 10, (text_tokens + (i % 7),), generator=g).tolist() for i in range(64)]
    return prefix, suffixes, n_image


def concat(prefix, suffix, device):
    extra = torch.tensor([suffix], device=device)
    return {**prefix, "input_ids": torch.cat([prefix["input_ids"], extra], 1),
            "attention_mask": torch.ones(1, prefix["input_ids"].shape[1] + len(suffix), dtype=torch.long, device=device),
            "mm_token_type_ids": torch.cat([prefix["mm_token_type_ids"], torch.zeros_like(extra, dtype=torch.int)], 1)}


def timed(fn, n_questions: int, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n_questions / (time.perf_counter() - start)


def matmul_peak(device: str, dtype: torch.dtype, size: int) -> float:
    """The device's matmul rate in FLOP/s: best of 5 timed runs of ``size``\ :sup:`3` products (after a warm-up)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=g).to(device, dtype) for _ in range(2))
    out = torch.empty_like(a)
    calls = 20 if device.startswith("cuda") else 3
    for _ in range(3):
        torch.mm(a, b, out=out)
    best = min(1 / timed(lambda: [torch.mm(a, b, out=out) for _ in range(calls)], 1, device) for _ in range(5))
    return 2 * size ** 3 * calls / best


def _attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """Q K^T and P V of one fused attention call, (batch, heads, length, dim) shapes, any backend."""
    b, h, s_q, d = query
    return 2 * b * h * s_q * key[-2] * (d + value[-1])


def forward_flops(model, prefix, groups: list[list[list[int]]]) -> float:
    """Model FLOPs per question: the image prefix's forward (vision tower + language model, once per
    image) shared by its group, plus each question's forward on the prefix's KV cache; logits only at
    the position read. Matmuls, convolutions and attention, counted as executed on these inputs."""
    from torch.utils.flop_counter import FlopCounterMode

    names = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")
    mapping = {getattr(torch.ops.aten, n): _attention_flops for n in names if hasattr(torch.ops.aten, n)}
    device = next(model.parameters()).device

    def counted(fn) -> tuple[int, object]:
        counter = FlopCounterMode(display=False, custom_mapping=mapping)
        with counter:
            result = fn()
        return counter.get_total_flops(), result

    prefix_flops, (cache, _) = counted(lambda: prefix_cache(model, {**prefix, "logits_to_keep": 1}))
    keyword = cache_keyword(model)
    total = 0
    for group in groups:
        total += prefix_flops
        for s in group:
            ids = torch.tensor([s], device=device)
            total += counted(lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1,
                                           **{keyword: copy.deepcopy(cache)}))[0]
    return total / sum(len(g) for g in groups)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    p.add_argument("--image-tokens", type=int, default=638)
    p.add_argument("--text-tokens", type=int, default=170)
    p.add_argument("--batch", type=int, default=16, help="question suffixes per forward on the shared prefix")
    p.add_argument("--questions", type=int, default=60, help="questions per engine")
    p.add_argument("--per-image", type=int, default=30, help="questions per image: the letters engine prefills "
                   "the image prefix once per this many questions")
    p.add_argument("--matmul-size", type=int, default=None, help="side of the square matmuls that measure the "
                   "peak (default 8192 on CUDA, 1024 on the CPU)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if min(args.questions, args.per_image, args.batch) < 1:
        p.error("--questions, --per-image and --batch must be at least 1")
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    model, ids = build(args.arch, args.device, dtype)
    prefix, suffixes, n_image = inputs(model, ids, args.image_tokens, args.text_tokens, args.device, dtype, 0)
    n = args.questions
    questions = [suffixes[i % len(suffixes)] for i in range(n)]
    groups = [questions[i:i + args.per_image] for i in range(0, n, args.per_image)]

    def run_generate():
        for s in questions:
            generate_first_token(model, concat(prefix, s, args.device), max_new_tokens=3)

    def run_forward():
        for s in questions:
            full_logits(model, concat(prefix, s, args.device))

    def run_letters():  # each image's questions share its prefix: prefill it once, score suffixes in batches
        for group in groups:
            cache, _ = prefix_cache(model, prefix)
            for start in range(0, len(group), args.batch):
                suffix_logits(model, cache, group[start:start + args.batch], pad_id=0)

    size = args.matmul_size or (8192 if cuda else 1024)
    peak = matmul_peak(args.device, dtype, size)
    with torch.inference_mode():
        try:
            flops = forward_flops(model, prefix, groups)
        except Exception as exc:  # counting is torch's dispatch machinery: a failure costs the roofline rows only
            print(f"FLOP count failed, no roofline share: {type(exc).__name__}: {exc}", file=sys.stderr)
            flops = None
        generate_first_token(model, concat(prefix, questions[0], args.device), max_new_tokens=3)  # warm-up
        run_letters()
        generate = timed(run_generate, n, args.device)
        forward = timed(run_forward, n, args.device)
        letters = timed(run_letters, n, args.device)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    share = {name: 100 * rate * flops / peak if flops else None for name, rate in (("generate", generate),
                                                                                   ("letters", letters))}

    def pct(name: str) -> str:
        return "" if share[name] is None else f"  ({share[name]:.1f}% of the peak)"

    print(f"arch {args.arch} on {device_name} ({dtype}); {n_image} image tokens, ~{args.text_tokens} text tokens, "
          f"{n} questions, {args.per_image} per image")
    print(f"matmul peak ({str(dtype).removeprefix('torch.')} {size}^3):             {peak / 1e12:8.2f} TFLOP/s")
    print(f"model forward FLOPs per question:              {(flops or 0) / 1e9:8.3f} GFLOP")
    print(f"generate (3 new tokens, batch 1):            {generate:8.2f} MCQ/s{pct('generate')}")
    print(f"one forward per question (batch 1):           {forward:8.2f} MCQ/s")
    print(f"letters: prefix once + batch {args.batch:<3} suffixes:     {letters:8.2f} MCQ/s{pct('letters')}")
    print(f"RATIO letters / generate = {letters / generate:.1f}x  (target >= 15x on an H100, 7B architecture; "
          f"letters >= 190 MCQ/s at 30 MCQ/image)")
    if args.json:
        from gpu_summary import environment, write_json

        write_json(args.json, {"arch": args.arch, "env": environment(args.device), "per_image": args.per_image,
                               "questions": n, "batch": args.batch, "image_tokens": n_image,
                               "text_tokens": args.text_tokens, "matmul_size": size,
                               "matmul_dtype": str(dtype).removeprefix("torch."), "matmul_tflops": peak / 1e12,
                               "flops_per_mcq": flops, "generate_mcq_s": generate, "forward_mcq_s": forward,
                               "letters_mcq_s": letters, "generate_roofline_pct": share["generate"],
                               "letters_roofline_pct": share["letters"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
