"""``python -m finer_datasets.testing.tiny_vlm --out DIR``: a tiny random LLaVA saved offline, the
same files for the same seed, loadable by transformers' Auto classes, never written over a folder
it did not write; importing the module stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from finer_datasets.testing import tiny_vlm


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_saved_twice_byte_identical_and_loadable(tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    state = torch.random.get_rng_state()
    first = tiny_vlm.save_tiny_vlm(tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left as it was
    second = tiny_vlm.save_tiny_vlm(tmp_path / "b")
    assert files(first) == files(second) and "model.safetensors" in files(first)
    assert files(tiny_vlm.save_tiny_vlm(tmp_path / "c", seed=1)) != files(first)
    model = AutoModelForImageTextToText.from_pretrained(first)
    processor = AutoProcessor.from_pretrained(first)
    built, _ = tiny_vlm.tiny_llava()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), built.state_dict().values()))
    assert processor.tokenizer.eos_token_id == model.generation_config.eos_token_id
    chat = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}],
                                         add_generation_prompt=True, tokenize=False)
    assert chat == "<|user|><image>\n</s><|assistant|>"


def test_the_command_replaces_only_its_own_folder(tmp_path, capsys):
    out = tmp_path / "tiny-vlm"
    assert tiny_vlm.main(["--out", str(out)]) == 0
    assert capsys.readouterr().out == f"tiny vision-language model saved to {out}\n"
    (out / "model.safetensors").write_bytes(b"damaged")
    assert tiny_vlm.main(["--out", str(out)]) == 0  # a previous tiny model is replaced
    assert (out / "model.safetensors").read_bytes() != b"damaged"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert tiny_vlm.main(["--out", str(mine)]) == 6
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --out {mine}: exists and was not written by")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    assert tiny_vlm.main([]) == 2
    assert capsys.readouterr().err.startswith("error: python -m finer_datasets.testing.tiny_vlm: the following "
                                              "arguments are required: --out")


def test_importing_the_module_imports_neither_torch_nor_transformers():
    code = ("import sys, finer_datasets.testing.tiny_vlm; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("build", [tiny_vlm.tiny_llava, tiny_vlm.tiny_llava_next, tiny_vlm.tiny_qwen25_vl_processor])
def test_the_in_memory_models_are_seeded(build):
    import torch

    (a, _), (b, _) = build(), build()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
