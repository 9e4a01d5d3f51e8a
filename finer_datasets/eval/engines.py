"""Running a Hugging Face vision-language model on FINER questions (imports torch; load lazily).

Two engines:

* ``generate`` — the paper's protocol: greedy decoding of at most the prompt template's budget
  of new tokens (2 for the ``official`` template, :mod:`finer_datasets.eval.prompts`), one
  question at a time; the raw output is kept and parsed later.
* ``letters`` — one forward pass; the answer is the argmax over the tokens of the five option
  letters and the 5-way distribution is kept. All questions about one image share the image
  prefix: it is prefilled once and its KV cache is reused for batches of question suffixes
  (right-padded; the logits are read at each row's last real token, so padding never influences
  them). Works with models whose positions continue from the cache, including Qwen2.5-VL's
  multimodal rotary positions (the model continues from the ``rope_deltas`` of the prefill).

Loading: :func:`load_pretrained` takes a model folder, a Hub id or a PEFT adapter folder (its base
model, then the adapter merged); :func:`check_model_source` first turns a model that cannot be had
(no such folder; a Hub id not cached while ``HF_HUB_OFFLINE`` is set; a Hub that cannot be reached)
into one line at once, instead of transformers' retries.

The KV cache is handed to the model under the keyword its ``forward`` declares: ``cache`` from
transformers 5.24 on (where ``past_key_values`` is deprecated, FutureWarning, removal planned for
5.40) and ``past_key_values`` before; it is read back from the output field of the same name, so
no deprecation warning is raised on either side of the rename (verified on 5.17, 5.23 and 5.24).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from finer_datasets.constants import LETTERS

__all__ = [
    "Question",
    "VisionLanguageModel",
    "letter_token_ids",
    "prefix_cache",
    "suffix_logits",
    "full_logits",
    "generate_first_token",
    "cache_keyword",
    "letters_scorer",
    "load_pretrained",
    "check_model_source",
    "looks_like_path",
]



@dataclass(frozen=True)
class Question:
    """One question to answer: its id, the image (PIL) and the prompt text."""

    question_id: str
    image_key: str
    image: Any
    prompt: str


def letter_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of ``A``..``E`` as the first generated token; each must be a single token."""
    ids = []
    for letter in LETTERS:
        pieces = tokenizer.encode(letter, add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(f"letter {letter!r} is not a single token for this tokenizer: {pieces}")
        ids.append(pieces[0])
    return ids


_CACHE_NAMES = ("cache", "past_key_values")  # newest first
_KEYWORD_BY_CLASS: dict[type, str] = {}


def _installed_convention() -> str:
    """The cache keyword of the installed transformers, read from its causal-LM output fields."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    names = {f.name for f in fields(CausalLMOutputWithPast)}
    return next((name for name in _CACHE_NAMES if name in names), "past_key_values")


def cache_keyword(model: Any) -> str:
    """The keyword under which ``model.forward`` takes a KV cache: ``"cache"`` (transformers
    >= 5.24) or ``"past_key_values"`` (older).

    Read from the signature once per model class (the decorators transformers puts on
    ``forward`` keep the real signature through ``functools.wraps``). A ``forward`` that names
    neither (a wrapper taking ``**kwargs``) gets the installed transformers' convention.
    """
    cls = type(model)
    if cls not in _KEYWORD_BY_CLASS:
        try:
            parameters = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):  # a forward without an inspectable signature
            parameters = {}
        named = [name for name in _CACHE_NAMES if name in parameters]
        _KEYWORD_BY_CLASS[cls] = named[0] if named else _installed_convention()
    return _KEYWORD_BY_CLASS[cls]


def _output_cache(out: Any) -> Any:
    """The KV cache of a model output, read from the field it has (``cache`` or ``past_key_values``)
    so that the deprecated alias property is never touched."""
    names = {f.name for f in fields(out)} if is_dataclass(out) else set()
    for name in _CACHE_NAMES:
        if name in names:
            return getattr(out, name)
    return out.past_key_values


@torch.inference_mode()
def prefix_cache(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[Any, int]:
    """Prefill ``inputs`` (batch 1: the image prefix) and return ``(cache, prefix_length)``."""
    out = model(**inputs, use_cache=True)
    cache = _output_cache(out)
    if cache is None:
        raise ValueError(f"{type(model).__name__} returned no KV cache for use_cache=True; use reuse_prefix=False")
    return cache, int(inputs["input_ids"].shape[1])


@torch.inference_mode()
def suffix_logits(model: Any, cache: Any, suffixes: Sequence[Sequence[int]], *, pad_id: int) -> torch.Tensor:
    """Logits of the last token of each suffix, continuing the prefix ``cache`` (not modified).

    Suffixes are right-padded into one batch; with causal attention a real token never sees the
    padding after it, so no attention mask is needed and the model's own position logic
    (including multimodal rotary deltas) continues from the cache.
    """
    batch = len(suffixes)
    width = max(len(s) for s in suffixes)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    for row, suffix in enumerate(suffixes):
        ids[row, : len(suffix)] = torch.tensor(list(suffix), dtype=torch.long)
    past = copy.deepcopy(cache)
    if batch > 1:
        past.batch_repeat_interleave(batch)
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), use_cache=True, **{cache_keyword(model): past}).logits
    last = torch.tensor([len(s) - 1 for s in suffixes], device=logits.device)
    return logits[torch.arange(batch, device=logits.device), last].float()


@torch.inference_mode()
def full_logits(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits at the last position of one full prompt (batch 1): the reference for prefix reuse."""
    return model(**inputs).logits[:, -1].float()


@torch.inference_mode()
def generate_first_token(model: Any, inputs: dict[str, torch.Tensor], *, max_new_tokens: int = 2) -> torch.Tensor:
    """Greedy ``generate`` of one prompt (batch 1); returns the new token ids."""
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, inputs["input_ids"].shape[1]:]


class VisionLanguageModel:
    """A model + processor pair; prompts (:mod:`finer_datasets.eval.prompts`) go in a one-image chat turn."""

    def __init__(self, model: Any, processor: Any, *, device: str | None = None):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.device = device or str(next(model.parameters()).device)
        self.letter_ids = letter_token_ids(self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    @classmethod
    def from_pretrained(cls, name: str, *, dtype: str = "auto", device: str | None = None, revision: str | None = None,
                        **kwargs: Any) -> VisionLanguageModel:
        """Load ``name`` (a folder, a Hub id, or a PEFT adapter folder) with :func:`load_pretrained`
        and move it to ``device`` (default: CUDA when there is one)."""
        from finer_datasets.errors import UsageError

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            kind = torch.device(device).type
        except (RuntimeError, ValueError):
            raise UsageError(f"--device {device}: not a torch device (cpu, cuda, cuda:N, mps, ...)") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device here (use --device cpu)")
        model, processor = load_pretrained(name, dtype=dtype, revision=revision, **kwargs)
        return cls(model.to(device), processor, device=device)

    @property
    def commit(self) -> str | None:
        """The Hub commit the weights came from, when transformers recorded it."""
        return getattr(self.model.config, "_commit_hash", None)

    # -- prompts ---------------------------------------------------------------------------------

    def chat_text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def split_prompt(self, prompt: str) -> tuple[str, str]:
        """Chat text split into (image prefix, question suffix); the prefix is the same for any prompt."""
        text = self.chat_text(prompt)
        start = text.index(prompt)
        return text[:start], text[start:]

    def _inputs(self, text: str, image: Any) -> dict[str, torch.Tensor]:
        enc = self.processor(text=[text], images=[image], return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _concat(self, prefix: dict[str, torch.Tensor], suffix: Sequence[int]) -> dict[str, torch.Tensor]:
        """The full prompt as exactly prefix tokens + suffix tokens (what prefix reuse computes)."""
        extra = torch.tensor([list(suffix)], dtype=torch.long, device=self.device)
        full = dict(prefix)
        full["input_ids"] = torch.cat([prefix["input_ids"], extra], dim=1)
        for key in ("attention_mask", "mm_token_type_ids", "token_type_ids"):
            if key in prefix:
                full[key] = torch.cat([prefix[key], torch.full_like(extra, 1 if key == "attention_mask" else 0)], dim=1)
        return full

    # -- engines ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, questions: Iterable[Question], *, max_new_tokens: int = 2) -> Iterator[tuple[str, str, int]]:
        """Greedy decoding (the paper's protocol); yields ``(question_id, raw_text, first_token_id)``."""
        for q in questions:
            inputs = self._inputs(self.chat_text(q.prompt), q.image)
            new = generate_first_token(self.model, inputs, max_new_tokens=max_new_tokens)
            yield q.question_id, self.tokenizer.decode(new, skip_special_tokens=True), int(new[0])

    def letters(
        self, questions: Iterable[Question], *, batch_size: int = 16, reuse_prefix: bool = True
    ) -> Iterator[tuple[str, str, list[float]]]:
        """Letter scoring; yields ``(question_id, letter, probabilities of A..E)``.

        Questions are grouped by consecutive ``image_key``; each group prefills its image once.
        """
        group: list[Question] = []
        for q in questions:
            if group and q.image_key != group[0].image_key:
                yield from self._letters_group(group, batch_size, reuse_prefix)
                group = []
            group.append(q)
        if group:
            yield from self._letters_group(group, batch_size, reuse_prefix)

    def _letters_group(self, group: list[Question], batch_size: int, reuse_prefix: bool) -> Iterator[tuple[str, str, list[float]]]:
        prefix_text, _ = self.split_prompt(group[0].prompt)
        prefix = self._inputs(prefix_text, group[0].image)
        suffixes = []
        for q in group:
            this_prefix, suffix_text = self.split_prompt(q.prompt)
            if this_prefix != prefix_text:
                raise ValueError(f"{q.question_id}: chat template prefix depends on the question")
            suffixes.append(self.tokenizer.encode(suffix_text, add_special_tokens=False))
        if reuse_prefix:
            cache, _ = prefix_cache(self.model, prefix)
        for start in range(0, len(group), batch_size):
            chunk = suffixes[start : start + batch_size]
            if reuse_prefix:
                logits = suffix_logits(self.model, cache, chunk, pad_id=self.pad_id)
            else:
                logits = torch.cat([full_logits(self.model, self._concat(prefix, s)) for s in chunk])
            probs = torch.softmax(logits[:, self.letter_ids], dim=-1)
            for q, p in zip(group[start : start + batch_size], probs.tolist()):
                yield q.question_id, LETTERS[max(range(5), key=p.__getitem__)], p


def letters_scorer(vlm: VisionLanguageModel) -> Any:
    """``score(image_path, question) -> probabilities of A..E`` with the letters engine: what the
    MLLM entropy filter's local discriminator (``llm.entropy.LettersDiscriminator``) calls."""

    def score(image: Any, question: str) -> list[float]:
        from PIL import Image

        with Image.open(image) as img:
            q = Question("q", str(image), img.convert("RGB"), question)
            _, _, probs = next(iter(vlm.letters([q])))
        return probs

    return score


# -- loading --------------------------------------------------------------------------------------------

def looks_like_path(name: str) -> bool:
    """A name no Hub id can be: it starts with ``.``, ``/`` or ``~``, ends with ``/``, or has two ``/``."""
    return (name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1
            or (os.sep != "/" and os.sep in name))


def check_model_source(name: str, *, revision: str | None = None, option: str = "--model") -> None:
    """Fail fast, in one line (:class:`~finer_datasets.errors.UsageError`), for a model that cannot
    be loaded: a path that is no folder; with ``HF_HUB_OFFLINE`` a Hub id that is not in the cache;
    online, a Hub id the Hub does not have or cannot be reached for (one request, no retries; a
    cached model is never asked for). A folder or a cached model passes untouched."""
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError

    from finer_datasets.errors import UsageError

    local = Path(name).expanduser()
    if local.is_dir():
        return
    if local.exists():
        raise UsageError(f"{option} {name}: a file, not a model folder")
    if looks_like_path(name):
        raise UsageError(f"{option} {name}: no such folder")
    try:
        cached = any(isinstance(huggingface_hub.try_to_load_from_cache(name, f, revision=revision), str)
                     for f in ("config.json", "adapter_config.json"))
    except HFValidationError:
        raise UsageError(f"{option} {name}: no such folder, and not a Hub model id") from None
    if cached:
        return
    if huggingface_hub.constants.is_offline_mode():
        raise UsageError(f"{option} {name}: no such folder, and not in the Hugging Face cache (HF_HUB_OFFLINE is "
                         f"set): give a model folder, or download it first")
    try:
        huggingface_hub.model_info(name, revision=revision, timeout=10)
    except HfHubHTTPError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UsageError(f"{option} {name}: no such folder, and the Hub has no such model or revision "
                         f"({type(exc).__name__}: {reason})") from None
    except Exception as exc:  # the HTTP client's network errors (no connection, DNS, timeout)
        if type(exc).__module__.split(".")[0] not in ("httpx", "httpx2", "requests", "urllib3"):
            raise
        raise UsageError(f"{option} {name}: no such folder, and the Hugging Face Hub cannot be reached "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); give a model folder, or "
                         f"download it first (HF_HUB_OFFLINE=1 then uses the cache)") from None


def load_pretrained(name: str, *, dtype: Any = "auto", revision: str | None = None, option: str = "--model",
                    **kwargs: Any) -> tuple[Any, Any]:
    """``(model, processor)`` for a model folder, a Hub id, or a PEFT adapter folder (a folder with
    ``adapter_config.json``: its ``base_model_name_or_path`` is loaded, the adapter applied and
    merged; the processor comes from the adapter folder when the trainer saved it there, else from
    the base). ``kwargs`` go to ``AutoModelForImageTextToText.from_pretrained`` (``trust_remote_code``
    to the processor too). A model that cannot be loaded is a :class:`~finer_datasets.errors.UsageError`
    naming it (:func:`check_model_source` first), not a traceback."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from finer_datasets.errors import UsageError

    check_model_source(name, revision=revision, option=option)
    adapter = Path(name).expanduser() / "adapter_config.json"
    base = name
    if adapter.is_file():
        try:
            base = json.loads(adapter.read_text(encoding="utf-8"))["base_model_name_or_path"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{option} {name}: adapter_config.json has no readable base_model_name_or_path "
                             f"({type(exc).__name__}: {exc})") from None
        if not isinstance(base, str) or not base:
            raise UsageError(f"{option} {name}: adapter_config.json names no base model (base_model_name_or_path)")
        check_model_source(base, option=f"{option} {name}: its base model")
    remote = {"trust_remote_code": kwargs["trust_remote_code"]} if "trust_remote_code" in kwargs else {}
    try:
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype, revision=None if adapter.is_file()
                                                            else revision, **kwargs)
        if adapter.is_file():
            import warnings

            from peft import PeftModel

            with warnings.catch_warnings():  # peft calls transformers' renamed checkpointing API
                warnings.filterwarnings("ignore", message=r"`\w*gradient_checkpointing\w*` is deprecated",
                                        category=FutureWarning)
                model = PeftModel.from_pretrained(model, name).merge_and_unload()
        has_processor = any((Path(name) / f).is_file() for f in ("processor_config.json", "preprocessor_config.json"))
        processor = AutoProcessor.from_pretrained(name if has_processor or not adapter.is_file() else base,
                                                  revision=None if adapter.is_file() else revision, **remote)
    except (OSError, ValueError, KeyError) as exc:  # what transformers raises for a model it cannot find or read
        reason = " ".join(str(exc).split())[:300]
        raise UsageError(f"{option} {name}: cannot load it ({type(exc).__name__}: {reason})") from exc
    return model, processor
