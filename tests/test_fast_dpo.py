"""The packed DPO step gives TRL's loss and LoRA gradients (tiny LLaVA, LLaVA-NeXT and Qwen2.5-VL); the
reference cache and the micro-batch search.

Reference: ``trl.DPOTrainer.compute_loss`` itself, on the batch its own vision collator builds
(chosen and rejected as separate sequences, reference forward with the adapter disabled).
Tolerances, float32 on the CPU: loss |fast - TRL| <= 1e-5; every LoRA gradient tensor
``assert_close(rtol=1e-4, atol=1e-4 * max|grad_TRL|)``. The LoRA B matrices are randomised first,
so the policy differs from the reference and every gradient is non-zero.
GPU (marked ``gpu``), bf16: loss within 2e-2 and each gradient's cosine similarity >= 0.99.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from finer_datasets.train.data import encode_batch, load_tuples_jsonl
from finer_datasets.train.fast_dpo import PackedPolicy, dpo_loss
from finer_datasets.train.packing import block_mask, pack
from finer_datasets.train.reference import (ReferenceCache, cache_key, compute_reference_logps, data_fingerprint,
                                            model_fingerprint)

from tiny_vlm import tiny_llava, tiny_llava_next, tiny_qwen25_vl_processor

TUPLES = Path(__file__).parent / "fixtures" / "tuning_trl" / "tuples.jsonl"
LORA_TARGETS = r".*language_model.*\.(q_proj|v_proj)"
BUILDERS = {"llava": tiny_llava, "llava-next": tiny_llava_next, "qwen2.5-vl": tiny_qwen25_vl_processor}


@pytest.fixture(scope="module")
def tuples():
    return load_tuples_jsonl(TUPLES)


def trl_setup(arch: str, tuples, tmp_path, *, device: str = "cpu", dtype=torch.float32):
    """A real trl.DPOTrainer around a tiny model, LoRA B randomised."""
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    model, processor = BUILDERS[arch]()
    model = model.to(device, dtype)
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[], beta=0.1, max_length=None,
                     use_cpu=device == "cpu", bf16=dtype == torch.bfloat16, activation_checkpointing=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=tuples, processing_class=processor,
                         peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS))
    generator = torch.Generator().manual_seed(1)
    for name, p in trainer.model.named_parameters():
        if "lora_B" in name:
            p.data.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    trainer.model.train()
    return trainer, processor


def trl_loss_and_grads(trainer, examples):
    batch = trainer.data_collator(copy.deepcopy(examples))
    batch = {k: v.to(trainer.args.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with trainer.compute_loss_context_manager():
        loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def fast_packed(processor, examples, device="cpu"):
    packed = pack(encode_batch(processor, examples, rows=range(len(examples))),
                  pad_id=processor.tokenizer.pad_token_id)
    return {k: v.to(device) for k, v in packed.items()}


def fast_loss_and_grads(trainer, processor, examples, packed=None, loss_types=("sigmoid",)):
    model = trainer.model
    packed = packed if packed is not None else fast_packed(processor, examples, trainer.args.device)
    with trainer.compute_loss_context_manager():
        out = PackedPolicy(model)(with_reference=True, **packed)
        loss = dpo_loss(out["chosen_logps"], out["rejected_logps"], out["ref_chosen_logps"], out["ref_rejected_logps"],
                        beta=0.1, n_tokens=packed["n_tokens"], loss_types=loss_types)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_fast_step_equals_trl_float32(arch, tuples, tmp_path):
    trainer, processor = trl_setup(arch, tuples, tmp_path)
    examples = [tuples[i] for i in range(4)]
    loss_trl, grads_trl = trl_loss_and_grads(trainer, examples)
    loss_fast, grads_fast = fast_loss_and_grads(trainer, processor, examples)
    assert abs(loss_trl.item() - 0.6931) > 1e-3  # policy != reference: a non-trivial loss
    assert abs(loss_fast.item() - loss_trl.item()) <= 1e-5
    assert len(grads_trl) == 8 and set(grads_fast) == set(grads_trl)  # 2 layers x q,v x A,B
    for name, g in grads_trl.items():
        assert g.abs().max() > 0, name
        torch.testing.assert_close(grads_fast[name], g, rtol=1e-4, atol=1e-4 * g.abs().max().item(), msg=name)


@pytest.mark.parametrize("loss_type", ["hinge", "ipo", "sft"])
def test_other_losses_equal_trl(loss_type, tuples, tmp_path):
    trainer, processor = trl_setup("llava", tuples, tmp_path)
    trainer.loss_types, trainer.loss_weights = [loss_type], [1.0]
    examples = [tuples[i] for i in range(4)]
    loss_trl, grads_trl = trl_loss_and_grads(trainer, examples)
    loss_fast, grads_fast = fast_loss_and_grads(trainer, processor, examples, loss_types=(loss_type,))
    assert abs(loss_fast.item() - loss_trl.item()) <= 1e-5 * max(1.0, abs(loss_trl.item()))
    for name, g in grads_trl.items():
        torch.testing.assert_close(grads_fast[name], g, rtol=1e-4, atol=1e-4 * g.abs().max().item(), msg=name)


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_wrong_packing_is_detected(arch, tuples, tmp_path):
    """The comparison above can fail: rejected positions not continuing from the prompt, or rejected
    tokens that can see the chosen ones, change the log-probabilities."""
    trainer, processor = trl_setup(arch, tuples, tmp_path)
    examples = [tuples[i] for i in range(2)]
    policy = PackedPolicy(trainer.model)
    packed = fast_packed(processor, examples)
    with torch.no_grad():
        right = policy(**packed)["rejected_logps"]
        shifted = policy(**{**packed, "pos_shift": torch.zeros_like(packed["pos_shift"])})["rejected_logps"]
        chosen_seg = packed["segment"] == 1
        leaky = {**packed, "segment": torch.where(chosen_seg, torch.zeros_like(packed["segment"]), packed["segment"])}
        seen = policy(**leaky)["rejected_logps"]
    assert (right - shifted).abs().max() > 1e-3
    assert (right - seen).abs().max() > 1e-3


def test_block_mask_layout():
    segment = torch.tensor([[0, 0, 1, 1, 2, 2, -1]], dtype=torch.int8)
    mask = block_mask(segment)[0, 0]
    assert mask[3].tolist() == [True, True, True, True, False, False, False]  # chosen: prompt + chosen, causal
    assert mask[5].tolist() == [True, True, False, False, True, True, False]  # rejected: prompt + rejected
    assert mask[4].tolist() == [True, True, False, False, True, False, False]
    assert mask[6].tolist() == [True, True, False, False, False, False, False]  # padding: prompt only, never empty
    additive = block_mask(segment, torch.float32)[0, 0]
    assert additive[5, 2] == torch.finfo(torch.float32).min and additive[5, 4] == 0


def test_vision_tower_once_per_image_and_lm_head_on_answers_only(tuples, tmp_path):
    trainer, processor = trl_setup("qwen2.5-vl", tuples, tmp_path)
    examples = [tuples[i] for i in range(3)]
    packed = fast_packed(processor, examples)
    lm = trainer.model.get_base_model()
    images, head_rows = [], []
    h1 = lm.model.visual.register_forward_hook(lambda m, a, k, o: images.append(int(k["grid_thw"].shape[0])),
                                               with_kwargs=True)
    h2 = lm.lm_head.register_forward_hook(lambda m, a, o: head_rows.append(a[0].shape[0]))
    try:
        out = PackedPolicy(trainer.model)(with_reference=True, **packed)
    finally:
        h1.remove()
        h2.remove()
    assert images == [3]  # one vision pass for policy and reference: each image once
    answer_tokens = int(packed["n_tokens"].sum())
    assert sum(head_rows) == 2 * answer_tokens  # policy + reference, answer tokens only
    assert answer_tokens == int((packed["segment"] > 0).sum()) < int((packed["segment"] >= 0).sum())  # no prompt
    assert out["chosen_logps"].shape == (3,) and torch.isfinite(out["ref_rejected_logps"]).all()


def test_reference_inline_equals_adapter_off_model(tuples, tmp_path):
    trainer, processor = trl_setup("llava", tuples, tmp_path)
    examples = [tuples[i] for i in range(3)]
    packed = fast_packed(processor, examples)
    policy = PackedPolicy(trainer.model)
    with torch.no_grad():
        out = policy(with_reference=True, **packed)
        with trainer.model.disable_adapter():
            base = policy(**packed)
    torch.testing.assert_close(out["ref_chosen_logps"], base["chosen_logps"])
    assert (out["chosen_logps"] - out["ref_chosen_logps"]).abs().max() > 1e-3


# -- reference cache ----------------------------------------------------------------------------------

class _Rows:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"row": i}


def _collate(examples, rows):
    return {"rows": torch.tensor(list(rows), dtype=torch.float32)}


def test_reference_cache_writes_reads_and_resumes(tmp_path):
    calls = []

    def ref(packed):
        calls.append(packed["rows"].tolist())
        return -packed["rows"], -2 * packed["rows"]

    cache = ReferenceCache(tmp_path, "k1")
    chosen, rejected = compute_reference_logps(ref, _collate, _Rows(7), cache=cache, batch_size=3, device="cpu",
                                               progress=False)
    assert chosen.tolist() == [-float(i) for i in range(7)] and rejected.tolist() == [-2.0 * i for i in range(7)]
    assert [p.name for p in tmp_path.iterdir()] == ["ref-logps-k1.pt"]
    calls.clear()
    again = compute_reference_logps(ref, _collate, _Rows(7), cache=cache, batch_size=3, device="cpu", progress=False)
    assert calls == [] and torch.equal(again[0], chosen)
    assert ReferenceCache(tmp_path, "k1").load(8) is None  # another length: not this data

    # a pass killed after two batches resumes with the rows it had not done
    def dies(packed):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return ref(packed)

    killed = ReferenceCache(tmp_path, "k2")
    with pytest.raises(KeyboardInterrupt):
        compute_reference_logps(dies, _collate, _Rows(7), cache=killed, batch_size=2, device="cpu", flush_every=1,
                                progress=False)
    assert killed.part(0, 1).exists() and not killed.path.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    calls.clear()
    chosen2, _ = compute_reference_logps(ref, _collate, _Rows(7), cache=killed, batch_size=2, device="cpu",
                                         progress=False)
    assert calls == [[4.0, 5.0], [6.0]] and torch.equal(chosen2, chosen)
    assert not killed.part(0, 1).exists()


def test_reference_share_of_one_process_is_incomplete_alone(tmp_path):
    with pytest.raises(RuntimeError, match="incomplete"):
        compute_reference_logps(lambda p: (p["rows"], p["rows"]), _collate, _Rows(4), cache=None, batch_size=2,
                                device="cpu", rank=1, world=2, progress=False)


def test_cache_key_depends_on_model_and_data():
    ds = load_tuples_jsonl(TUPLES)
    settings = {"max_length": 512}
    a, _ = tiny_llava(seed=0)
    b, _ = tiny_llava(seed=1)
    assert model_fingerprint(a) == model_fingerprint(tiny_llava(seed=0)[0]) != model_fingerprint(b)
    d1 = data_fingerprint(ds, settings=settings)
    assert d1 == data_fingerprint(load_tuples_jsonl(TUPLES), settings=settings)
    assert d1 != data_fingerprint(ds.select(range(4)), settings=settings)
    assert d1 != data_fingerprint(ds, settings={"max_length": 256})
    assert cache_key(model_fingerprint(a), d1) != cache_key(model_fingerprint(b), d1)


# -- micro-batch search ---------------------------------------------------------------------------------

class _FakePolicy:
    def __init__(self):
        self.checkpointing = False

    def to(self, device):
        return self

    def train(self):
        return self

    def activation_checkpointing_enable(self, kwargs=None):
        self.checkpointing = True


@pytest.mark.parametrize("limit, with_checkpointing, expected", [
    (3, False, (2, False)),  # 8 and 4 run out of memory, 2 fits
    (8, False, (8, False)),
    (1, True, (1, True)),  # nothing fits without checkpointing: switched on, then 8, 4, 2 fail and 1 fits
])
def test_largest_micro_batch_halves_then_checkpoints(monkeypatch, limit, with_checkpointing, expected):
    from finer_datasets.train import autobatch

    policy = _FakePolicy()
    tried = []

    def fits(p, packed, inline):
        tried.append((packed["n"], p.checkpointing))
        return packed["n"] <= limit and p.checkpointing == with_checkpointing

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(autobatch, "_fits", fits)
    rows = [{"prompt": "q" * i, "chosen": "a", "rejected": "b"} for i in range(10)]
    result = autobatch.largest_micro_batch(policy, lambda ex, r: {"n": len(ex)}, rows, start=8, device="cuda")
    assert result == expected
    assert tried[0] == (8, False)


def test_largest_micro_batch_gives_up_and_accumulation_steps(monkeypatch):
    from finer_datasets.train import autobatch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(autobatch, "_fits", lambda p, packed, inline: False)
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}] * 4
    with pytest.raises(torch.cuda.OutOfMemoryError):
        autobatch.largest_micro_batch(_FakePolicy(), lambda ex, r: {}, rows, start=2, device="cuda")
    assert autobatch.largest_micro_batch(_FakePolicy(), None, rows, start=4, device="cpu") == (4, False)  # untried
    assert autobatch.accumulation_steps(64, 8, 2) == 4
    with pytest.raises(ValueError, match="not a multiple"):
        autobatch.accumulation_steps(64, 6, 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_fast_step_equals_trl_bf16_gpu(arch, tuples, tmp_path):
    trainer, processor = trl_setup(arch, tuples, tmp_path, device="cuda", dtype=torch.bfloat16)
    examples = [tuples[i] for i in range(4)]
    loss_trl, grads_trl = trl_loss_and_grads(trainer, examples)
    loss_fast, grads_fast = fast_loss_and_grads(trainer, processor, examples)
    assert abs(loss_fast.item() - loss_trl.item()) <= 2e-2
    for name, g in grads_trl.items():
        cos = torch.nn.functional.cosine_similarity(grads_fast[name].flatten().float(), g.flatten().float(), dim=0)
        assert cos >= 0.99, (name, cos.item())
