"""Score a Hugging Face vision-language model on a FINER dataset.

    python baselines/score.py --model Qwen/Qwen2.5-VL-7B-Instruct --dataset finer/compre_cap \\
        --revision v1.0.0 --engine generate --out runs/qwen25vl-7b
    python baselines/score.py --model PATH --dataset out/compre_cap --engine letters --batch_size 16 --out runs/x
    python baselines/score.py --config run.yaml          # the same fields as YAML; flags override it

Questions come straight from ``datasets.load_dataset``; the prompt is the question, the five
lettered options and "Please answer with a single capital letter (A, B, C, D, or E)." (paper,
section D). Engines: ``generate`` (greedy, at most 3 new tokens: the paper's protocol) and
``letters`` (one forward pass, argmax over the option letters, 5-way probabilities saved; the image
prefix is prefilled once per image and reused for batches of questions). Answers are appended to
``OUT/predictions.jsonl`` as they come: an interrupted run continues where it stopped. The report
(``report.json``, ``report.md``, plots) is written to ``OUT`` at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from finer_datasets.mcq.construct import prompt_text
from finer_datasets.mcq.pairs import SETTINGS

logger = logging.getLogger("finer.score")


@dataclass
class ScoreArgs:
    model: str = field(default="", metadata={"help": "model id or local folder (AutoModelForImageTextToText)"})
    dataset: str = field(default="finer/compre_cap", metadata={"help": "Hub id or built folder"})
    revision: str | None = field(default=None, metadata={"help": "dataset revision, e.g. v1.0.0"})
    settings: list[str] = field(default_factory=lambda: list(SETTINGS), metadata={"help": "settings to run"})
    engine: str = field(default="generate", metadata={"help": "generate (paper protocol) or letters (one forward)"})
    batch_size: int = field(default=16, metadata={"help": "questions per forward pass (letters engine)"})
    max_new_tokens: int = field(default=3, metadata={"help": "generate engine: new tokens"})
    parser: str = field(default="strict", metadata={"help": "answer parser for the report: strict or official"})
    limit: int | None = field(default=None, metadata={"help": "only the first N pairs of each setting"})
    dtype: str = field(default="auto", metadata={"help": "model dtype (auto, bfloat16, float32, ...)"})
    device: str | None = field(default=None, metadata={"help": "cuda, cpu, ... (default: cuda if available)"})
    out: str = field(default="runs/score", metadata={"help": "output folder: predictions.jsonl and the report"})


def parse_args(argv: list[str] | None = None) -> ScoreArgs:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the fields below")
    for f in fields(ScoreArgs):
        kind = {"int": int, "int | None": int}.get(str(f.type), str)
        extra = {"nargs": "+"} if f.name == "settings" else {}
        p.add_argument(f"--{f.name}", type=kind, default=None, help=f.metadata.get("help"), **extra)
    ns = p.parse_args(argv)
    values: dict[str, Any] = {}
    if ns.config:
        import yaml

        values.update(yaml.safe_load(Path(ns.config).read_text()) or {})
    values.update({k: v for k, v in vars(ns).items() if k != "config" and v is not None})
    unknown = set(values) - {f.name for f in fields(ScoreArgs)}
    if unknown:
        p.error(f"unknown fields: {sorted(unknown)}")
    args = ScoreArgs(**values)
    if not args.model:
        p.error("--model is required")
    if args.engine not in ("generate", "letters"):
        p.error("--engine must be generate or letters")
    return args


def load_questions(args: ScoreArgs) -> tuple[list[dict], list[Any]]:
    """Pair records and the questions (grouped by image) of the requested settings."""
    import datasets
    from PIL import Image

    datasets.disable_progress_bars()
    records, located = [], []
    for setting in args.settings:
        split = datasets.load_dataset(args.dataset, split=setting, revision=args.revision)
        if args.limit is not None:
            split = split.select(range(min(args.limit, split.num_rows)))
        image_columns = [c for c, f in split.features.items() if isinstance(f, datasets.Image)]
        raw = split.cast_column(image_columns[0], datasets.Image(decode=False)) if len(image_columns) == 1 else split
        for index, record in enumerate(split["json"]):
            records.append(record)
            located.append((record["image_id"], raw, index, image_columns))
    cache: dict[str, Any] = {}

    def image(entry: tuple) -> Any:
        image_id, split, index, columns = entry
        if image_id not in cache:
            cache.clear()  # questions are grouped by image: one decoded image at a time
            row = split[index]
            value = next(row[c] for c in columns if row[c] is not None)
            cache[image_id] = Image.open(io.BytesIO(value["bytes"])).convert("RGB") if isinstance(value, dict) else value
        return cache[image_id]

    questions = []
    order = sorted(range(len(records)), key=lambda i: (records[i]["image_id"], records[i]["pair_id"]))
    for i in order:
        for polarity in ("positive", "negative"):
            q = records[i][polarity]
            questions.append((q["question_id"], records[i]["image_id"], located[i], prompt_text(q["question"], q["options"])))
    return records, [_LazyQuestion(qid, key, entry, prompt, image) for qid, key, entry, prompt in questions]


class _LazyQuestion:
    """A Question whose image is decoded only when an engine reads it."""

    def __init__(self, question_id: str, image_key: str, entry: tuple, prompt: str, loader: Any):
        self.question_id, self.image_key, self.prompt = question_id, image_key, prompt
        self._entry, self._loader = entry, loader

    @property
    def image(self) -> Any:
        return self._loader(self._entry)


def done_ids(path: Path) -> set[str]:
    """Question ids already answered; a last line cut by a crash is dropped from the file."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    return {json.loads(line)["question_id"] for line in data.decode("utf-8").splitlines() if line.strip()}


def main(args: ScoreArgs, *, vlm: Any = None) -> dict[str, Any]:
    from finer_datasets.eval.report import write_report
    from finer_datasets.eval.scoring import load_predictions, score

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    predictions = out / "predictions.jsonl"
    records, questions = load_questions(args)
    done = done_ids(predictions)
    todo = [q for q in questions if q.question_id not in done]
    logger.info("%d questions, %d already answered, %d to go", len(questions), len(done), len(todo))
    if todo:
        if vlm is None:
            from finer_datasets.eval.engines import VisionLanguageModel

            vlm = VisionLanguageModel.from_pretrained(args.model, dtype=args.dtype, device=args.device)
        from tqdm.auto import tqdm

        if args.engine == "generate":
            answers = ({"question_id": qid, "response": text}
                       for qid, text, _ in vlm.generate(todo, max_new_tokens=args.max_new_tokens))
        else:
            answers = ({"question_id": qid, "response": letter, "probs": [round(p, 6) for p in probs]}
                       for qid, letter, probs in vlm.letters(todo, batch_size=args.batch_size))
        with open(predictions, "a", encoding="utf-8") as f:
            for answer in tqdm(answers, total=len(todo), desc=f"{args.engine}", unit="q"):
                f.write(json.dumps(answer) + "\n")
                f.flush()
            os.fsync(f.fileno())
    result = score(records, load_predictions(predictions), parser=args.parser)
    result["model"], result["engine"] = args.model, args.engine
    write_report(result, out, title=f"FINER: {args.model} on {args.dataset}")
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = main(parse_args())
    for name, block in result["settings"].items():
        print(f"{name:>10}: paired accuracy {block['paired_accuracy']:.1f}% ({block['n_pairs']} pairs)")
    sys.exit(0)
