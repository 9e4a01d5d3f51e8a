"""Tiny vision-language models built offline from configs (random weights, a tokenizer trained here).

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a few FINER-like sentences, the
image processor is built from keyword arguments and the models come from their configs. They
are for tests and smoke runs on a CPU, never for results: the weights are random.

    python -m finer_datasets.testing.tiny_vlm --out tiny-vlm

saves the tiny LLaVA (:func:`tiny_llava`) as a model folder that ``transformers``'
``AutoModelForImageTextToText`` / ``AutoProcessor``, ``baselines/train_dpo.py`` and
``baselines/score.py`` load like any Hub model (about 0.3 MB; the same seed gives the same
files). torch and transformers are imported inside the functions: importing this module is light.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from finer_datasets.core.guard import give_default_mode

__all__ = ["tiny_tokenizer", "tiny_qwen_tokenizer", "tiny_llava", "tiny_llava_next", "tiny_qwen25_vl",
           "tiny_qwen25_vl_processor", "save_tiny_vlm", "main", "MARKER"]

#: written into the saved ``config.json``: a folder holding it was written by :func:`save_tiny_vlm`
MARKER = "finer_tiny_vlm"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

CORPUS = [
    "Can you see cat, desk, and lamp in this image?",
    "Yes, I can see the sun with a yellow color in this image.",
    "No, but I can see the house with a red door in this image.",
    "What is the cup with a white color on? The table is not with a black color, but is with a brown color.",
    "Please answer with a single capital letter (A, B, C, D, or E).",
    "A B C D E A. B. C. D. E. kite ball tree cloud bird boat car flower fence window chair book box",
] * 20


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's RNG seeded inside the block and restored after it (the global state is left as it was)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _bpe_tokenizer(specials: list[str], extra_special_tokens: dict[str, str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   extra_special_tokens=extra_special_tokens)


def tiny_tokenizer() -> Any:
    """Byte-level BPE with LLaVA's ``<image>`` token."""
    return _bpe_tokenizer(["<pad>", "</s>", "<image>", "<|user|>", "<|assistant|>"], {"image_token": "<image>"})


def tiny_qwen_tokenizer() -> Any:
    """Byte-level BPE with Qwen2-VL's vision special tokens (``<|image_pad|>`` and friends)."""
    return _bpe_tokenizer(["<pad>", "</s>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>",
                           "<|user|>", "<|assistant|>"],
                          {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})


def _clip_and_qwen2(tokenizer: Any, max_positions: int) -> tuple[Any, Any]:
    """The tiny towers shared by the LLaVA models: a 2-layer CLIP (32 px, patch 8) and a 2-layer Qwen2."""
    from transformers import CLIPVisionConfig, Qwen2Config

    return (CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=32, patch_size=8),
            Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions))


def tiny_llava(seed: int = 0) -> tuple[Any, Any]:
    """A LLaVA with a 2-layer CLIP tower (32 px, patch 8) and a 2-layer Qwen2 text model; ``(model, processor)``."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = tiny_tokenizer()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                            do_center_crop=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                               patch_size=8, num_additional_image_tokens=1, vision_feature_select_strategy="default")
    vision, text = _clip_and_qwen2(tokenizer, 512)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    with _seeded(seed):
        model = LlavaForConditionalGeneration(config).eval()
    return model, processor


def tiny_llava_next(seed: int = 0) -> tuple[Any, Any]:
    """A LLaVA-NeXT (LLaVA-1.6: any-resolution tiles + newline tokens) with the tiny towers of
    :func:`tiny_llava`; ``(model, processor)``."""
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor)

    tokenizer = tiny_tokenizer()
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                 image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                                   patch_size=8, vision_feature_select_strategy="default",
                                   num_additional_image_tokens=1)
    vision, text = _clip_and_qwen2(tokenizer, 2048)
    config = LlavaNextConfig(vision_config=vision, text_config=text,
                             image_token_id=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=pinpoints,
                             vision_feature_select_strategy="default", vision_feature_layer=-1)
    with _seeded(seed):
        model = LlavaNextForConditionalGeneration(config).eval()
    return model, processor


_QWEN_VISION = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 16,
                "fullatt_block_indexes": [1], "in_chans": 3}


def _qwen25_vl(vocab_size: int, ids: dict[str, int], eos: int, seed: int) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
                     "bos_token_id": 1, "eos_token_id": eos, "pad_token_id": 0,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}},
        vision_config=dict(_QWEN_VISION),
        image_token_id=ids["image"], video_token_id=ids["video"],
        vision_start_token_id=ids["vision_start"], vision_end_token_id=ids["vision_end"],
    )
    with _seeded(seed):
        return Qwen2_5_VLForConditionalGeneration(config).eval()


def tiny_qwen25_vl(seed: int = 0) -> tuple[Any, dict[str, int]]:
    """A Qwen2.5-VL (multimodal rotary positions) with tiny towers; returns ``(model, token ids)``."""
    ids = {"image": 90, "vision_start": 91, "vision_end": 92, "video": 93}
    return _qwen25_vl(128, ids, 2, seed), ids


def tiny_qwen25_vl_processor(seed: int = 0) -> tuple[Any, Any]:
    """A tiny Qwen2.5-VL with a working processor (no torchvision needed); ``(model, processor)``.

    ``Qwen2_5_VLProcessor`` insists on a video processor, which needs torchvision; the subclass
    below declares only an image processor and a tokenizer and keeps Qwen's image-token expansion
    (``<|image_pad|>`` repeated grid_t*grid_h*grid_w/merge**2 times) and ``mm_token_type_ids``.
    It cannot be saved and loaded back by ``AutoProcessor`` (which wants the video processor)."""
    from transformers import ProcessorMixin, Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil

    class TinyQwen25VLProcessor(Qwen2_5_VLProcessor):
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None,
                     **kwargs: Any):
            self.image_token, self.video_token = tokenizer.image_token, tokenizer.video_token
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    tokenizer = tiny_qwen_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(min_pixels=16 * 16, max_pixels=32 * 32, patch_size=4, merge_size=2,
                                               temporal_patch_size=2)
    processor = TinyQwen25VLProcessor(image_processor, tokenizer, chat_template=QWEN_CHAT_TEMPLATE)
    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name}|>") for name in ("image_pad", "video_pad",
                                                                             "vision_start", "vision_end")}
    ids = {"image": ids["image_pad"], "video": ids["video_pad"], "vision_start": ids["vision_start"],
           "vision_end": ids["vision_end"]}
    return _qwen25_vl(len(tokenizer), ids, 1, seed), processor


# -- on disk ------------------------------------------------------------------------------------------

def _written_by_us(folder: Path) -> bool:
    import json

    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get(MARKER) is True
    except (OSError, ValueError, AttributeError):
        return False


def save_tiny_vlm(out: str | Path, *, seed: int = 0) -> Path:
    """Save :func:`tiny_llava` (model, processor, chat template) as a model folder ``out``.

    ``out`` must be missing, empty, or a folder this function wrote before (it is then replaced);
    anything else is refused (:class:`~finer_datasets.errors.OutputError`). The folder is written
    next to ``out`` and moved into place, so a failed run leaves ``out`` as it was."""
    from finer_datasets.errors import OutputError

    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or _written_by_us(out))):
        raise OutputError(f"--out {out}: exists and was not written by finer_datasets.testing.tiny_vlm; "
                          f"give a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    model, processor = tiny_llava(seed)
    setattr(model.config, MARKER, True)
    tokenizer = processor.tokenizer  # the model's special tokens are the tokenizer's (no mismatch warning on load)
    for config in (model.config.text_config, model.generation_config):
        config.eos_token_id, config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    give_default_mode(tmp)
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        for path in tmp.rglob("*"):  # safetensors writes its file 0600
            give_default_mode(path)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m finer_datasets.testing.tiny_vlm --out DIR``: errors are one ``error: ...`` line."""
    import logging

    from finer_datasets.errors import FinerError, UsageError

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    parser = _Parser(prog="python -m finer_datasets.testing.tiny_vlm",
                     description="Save a tiny random LLaVA (2-layer CLIP tower, 2-layer Qwen2 text model, a BPE "
                                 "tokenizer trained offline) as a model folder for CPU smoke runs and tests. "
                                 "Random weights: never for results.")
    parser.add_argument("--out", required=True, type=Path, help="model folder to write (new, empty, or a previous "
                                                                "tiny model)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:  # this layer sits below finer_datasets.cli: its own one-line error handling
        args = parser.parse_args(argv)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        print(f"tiny vision-language model saved to {save_tiny_vlm(args.out, seed=args.seed)}")
    except FinerError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
