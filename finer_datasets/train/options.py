"""Command-line options of ``baselines/train_dpo.py``: TRL's parser, with every bad option one line.

:func:`parse` reads the script's own dataclass, TRL's ``DPOConfig`` and ``ModelConfig`` from flags
over a ``--config`` YAML (:func:`finer_datasets.core.config_file.load_yaml_mapping`: a missing,
non-UTF-8, non-mapping or alias-bomb file is refused), and raises
:class:`~finer_datasets.errors.UsageError` (exit 2, one line, no usage dump) for an unknown flag or
config key, a value of the wrong type, a number out of range (:data:`CHECKS`) and a margin-DPO
option without ``--fast``, all before anything is loaded. :func:`fit_precision` turns a preset's
bf16 into float32 where bf16 cannot run (no CUDA device with bf16 support, or ``--use_cpu``), with
one warning line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from dataclasses import fields
from typing import Any, Callable, Sequence

from finer_datasets.core.config_file import load_yaml_mapping
from finer_datasets.errors import UsageError

__all__ = ["parse", "fit_precision", "CHECKS"]

logger = logging.getLogger("finer.train_dpo")


def _positive(v: Any) -> bool:
    return v >= 1


#: option -> (what it must be, test); ``None`` values (unset) are not checked
CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    **{name: ("a positive integer", _positive) for name in (
        "max_train_samples", "global_batch_size", "image_max_pixels", "eval_limit", "eval_batch_size",
        "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps", "max_length",
        "precompute_ref_batch_size", "lora_r")},
    "val_ratio": ("a fraction in [0, 1) (0: no validation split)", lambda v: 0 <= v < 1),
    "lora_dropout": ("a fraction in [0, 1)", lambda v: 0 <= v < 1),
    "learning_rate": ("a positive number", lambda v: v > 0),
    "lora_alpha": ("a positive number", lambda v: v > 0),
    "beta": ("a positive number", lambda v: v > 0),
    "num_train_epochs": ("a positive number", lambda v: v > 0),
    "warmup_steps": ("0 or more (below 1: a fraction of the steps)", lambda v: v >= 0),
    "max_steps": ("-1 (train num_train_epochs) or a positive integer", lambda v: v == -1 or v >= 1),
    **{name: ("0 or more (0: plain DPO)", lambda v: v >= 0) for name in ("margin_alpha", "margin_gamma")},
}


def _parser(dataclass_types: Sequence[type], prog: str, description: str) -> Any:
    from trl import TrlParser

    class Parser(TrlParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    return Parser(dataclass_types, prog=prog, description=description)


def _pop_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """``(--config value, the other arguments)``; ``--config=FILE`` works too."""
    rest, path, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise UsageError("--config needs a YAML file")
            path, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return path, rest


def _converted(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """A config value as the flag would give it (the flag's type and choices), or a one-line error."""
    if isinstance(value, dict):  # options taking a JSON object (e.g. gradient_checkpointing_kwargs)
        return value
    if isinstance(value, list) and action.nargs not in ("+", "*"):
        if action.type is str:  # a ``str | list[str]`` field (e.g. report_to): the dataclass takes the list
            return value
        raise UsageError(f"{where}: {key} takes one value, not a list")
    out = []
    for item in (value if isinstance(value, list) else [value]):
        if item is None:
            out.append(None)
            continue
        if isinstance(item, (dict, list)):
            raise UsageError(f"{where}: {key}: expected a value, not a {type(item).__name__}")
        try:
            converted = action.type(str(item)) if callable(action.type) else item
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            raise UsageError(f"{where}: {key}: {item!r} is not a valid value") from None
        if action.choices is not None and converted not in action.choices:
            raise UsageError(f"{where}: {key}: {item!r} is not one of {[str(c) for c in action.choices]}")
        out.append(converted)
    return out if isinstance(value, list) else out[0]


def _apply_config(parser: Any, path: str) -> None:
    """The config file's values become the parser's defaults (flags still override them)."""
    config = {key.replace("-", "_"): value for key, value in load_yaml_mapping(path).items()}  # as the flags
    where = f"--config {path}"
    actions: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        actions.setdefault(action.dest, []).append(action)
    unknown = sorted(key for key in config if key not in actions or key in ("help", "config"))
    if unknown:
        raise UsageError(f"{where}: unknown option(s) {', '.join(unknown)} (see --help for the option names)")
    for key, value in config.items():
        flag = next((a for a in actions[key] if a.nargs != 0), actions[key][0])  # not a boolean's --no_X
        converted = _converted(flag, key, value, where)
        for action in actions[key]:
            action.default = converted
            action.required = False


def _check(namespace: argparse.Namespace) -> None:
    for name, (wanted, ok) in CHECKS.items():
        value = getattr(namespace, name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise UsageError(f"--{name} must be {wanted}, got {value!r}")
    if (getattr(namespace, "margin_alpha", 0) or getattr(namespace, "margin_gamma", 0)) and not getattr(
            namespace, "fast", True):
        raise UsageError("--margin_alpha / --margin_gamma (margin DPO, an experiment) are options of --fast")


def fit_precision(namespace: Any, *, cuda_bf16: bool | None = None) -> list[str]:
    """Where bf16 cannot run (``--use_cpu``, or no CUDA device with bf16 support), turn the
    preset's ``bf16`` / ``dtype: bfloat16`` into float32, with one warning line naming what
    changed; returns those changes (``[]`` when none). An unset ``bf16`` (TRL's ``DPOConfig``
    turns it on unless ``fp16`` is) becomes false there without a warning: nobody asked for it."""
    if cuda_bf16 is None:
        from transformers.utils import is_torch_bf16_gpu_available

        cuda_bf16 = is_torch_bf16_gpu_available()
    if cuda_bf16 and not getattr(namespace, "use_cpu", False):
        return []
    if getattr(namespace, "bf16", False) is None and not getattr(namespace, "fp16", False):
        namespace.bf16 = False
    wants = [name for name in ("bf16", "bf16_full_eval") if getattr(namespace, name, False)]
    wants += ["dtype"] if getattr(namespace, "dtype", None) == "bfloat16" else []
    if not wants:
        return []
    changes = []
    for name in wants:
        setattr(namespace, name, "float32" if name == "dtype" else False)
        changes.append(f"{name}: {getattr(namespace, name)}".replace("False", "false"))
    why = "--use_cpu" if getattr(namespace, "use_cpu", False) else "no CUDA device with bfloat16 support"
    logger.warning("%s: training in float32 instead of bfloat16 (%s)", why, ", ".join(changes))
    return changes


def parse(dataclass_types: Sequence[type], argv: Sequence[str] | None = None, *, prog: str = "train_dpo.py",
          description: str = "", cuda_bf16: bool | None = None) -> tuple[Any, ...]:
    """The dataclasses from ``--config`` then the flags; every problem is a :class:`UsageError`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(dataclass_types, prog, description)
    path, argv = _pop_config(argv)
    if path is not None:
        _apply_config(parser, path)
    namespace = parser.parse_args(argv)
    _check(namespace)
    fit_precision(namespace, cuda_bf16=cuda_bf16)
    values = vars(namespace)
    out = []
    for dataclass_type in dataclass_types:
        names = [f.name for f in fields(dataclass_type) if f.init]
        try:
            with warnings.catch_warnings():  # TRL's own default trips transformers' rename warning
                warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated",
                                        category=FutureWarning)
                out.append(dataclass_type(**{name: values[name] for name in names if name in values}))
        except (ValueError, TypeError) as exc:  # the dataclasses' own checks (e.g. fp16 without a GPU)
            raise UsageError(f"{' '.join(str(exc).split())}") from None
    return tuple(out)
