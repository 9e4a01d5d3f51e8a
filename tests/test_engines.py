"""Model engines on tiny offline VLMs: prefix reuse is exact, engines agree, baseline script resumes."""

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from tiny_vlm import tiny_llava, tiny_qwen25_vl

from finer_datasets.eval.engines import (
    LETTERS,
    Question,
    VisionLanguageModel,
    cache_keyword,
    full_logits,
    prefix_cache,
    suffix_logits,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "baselines"))
import score as score_script  # noqa: E402

PROMPT = "Can you see {}?\nA. Yes\nB. No, but cat\nC. No, but dog\nD. No, but owl\nE. No, but fox\n" \
         "Please answer with a single capital letter (A, B, C, D, or E)."


@pytest.fixture(scope="module")
def llava():
    model, processor = tiny_llava()
    return VisionLanguageModel(model, processor, device="cpu")


@pytest.fixture(scope="module")
def questions(sample_dir):
    from PIL import Image

    images = sorted((sample_dir / "images").glob("*.jpg"))[:2]
    out = []
    for image_path in images:
        image = Image.open(image_path).convert("RGB")
        for i, thing in enumerate(["cat", "a red kite and a striped ball", "tree", "the house with a blue door"]):
            out.append(Question(f"{image_path.stem}_{i}", image_path.stem, image, PROMPT.format(thing)))
    return out


def test_prefix_reuse_equals_full_forward_llava(llava, questions):
    group = questions[:4]
    prefix_text, _ = llava.split_prompt(group[0].prompt)
    prefix = llava._inputs(prefix_text, group[0].image)
    suffixes = [llava.tokenizer.encode(llava.split_prompt(q.prompt)[1], add_special_tokens=False) for q in group]
    assert len({len(s) for s in suffixes}) > 1  # right padding is exercised
    cache, _ = prefix_cache(llava.model, prefix)
    reused = suffix_logits(llava.model, cache, suffixes, pad_id=llava.pad_id)
    for row, suffix in enumerate(suffixes):
        reference = full_logits(llava.model, llava._concat(prefix, suffix))[0]
        assert torch.allclose(reused[row], reference, atol=1e-5), (reused[row] - reference).abs().max()
    assert (reused[0] - reused[1]).abs().max() > 1e-4  # different questions, different logits
    # the cache is left untouched: reusing it again gives the same numbers
    again = suffix_logits(llava.model, cache, suffixes[:1], pad_id=llava.pad_id)
    assert torch.allclose(again[0], reused[0], atol=1e-6)


def test_letters_engine_with_and_without_reuse(llava, questions):
    reused = list(llava.letters(questions, batch_size=3))
    plain = list(llava.letters(questions, reuse_prefix=False))
    assert [q for q, _, _ in reused] == [q.question_id for q in questions]
    for (qid, letter, probs), (_, letter2, probs2) in zip(reused, plain):
        assert letter == letter2 and abs(sum(probs) - 1) < 1e-5
        assert max(abs(a - b) for a, b in zip(probs, probs2)) < 1e-5


def test_prefix_reuse_with_multimodal_rotary_positions():
    model, ids = tiny_qwen25_vl()
    vision = model.config.vision_config
    grid = torch.tensor([[1, 4, 6]])
    n_image = int(grid.prod()) // vision.spatial_merge_size ** 2
    torch.manual_seed(1)
    pixels = torch.randn(int(grid.prod()), vision.in_chans * vision.temporal_patch_size * vision.patch_size ** 2)
    prefix_ids = torch.tensor([[5, 6, 7, ids["vision_start"], *[ids["image"]] * n_image, ids["vision_end"], 8]])
    mm = (prefix_ids == ids["image"]).int()
    prefix = {"input_ids": prefix_ids, "attention_mask": torch.ones_like(prefix_ids), "pixel_values": pixels,
              "image_grid_thw": grid, "mm_token_type_ids": mm}
    cache, _ = prefix_cache(model, prefix)
    assert int(model.model.rope_deltas.abs().sum()) > 0  # text positions after the image are shifted
    suffixes = [[10, 11, 12, 13], [20, 21], [30, 31, 32, 33, 34, 35]]
    reused = suffix_logits(model, cache, suffixes, pad_id=0)
    for row, suffix in enumerate(suffixes):
        extra = torch.tensor([suffix])
        full = {**prefix, "input_ids": torch.cat([prefix_ids, extra], 1),
                "attention_mask": torch.ones(1, prefix_ids.shape[1] + len(suffix), dtype=torch.long),
                "mm_token_type_ids": torch.cat([mm, torch.zeros_like(extra, dtype=mm.dtype)], 1)}
        assert torch.allclose(reused[row], full_logits(model, full)[0], atol=1e-5)
    # control: with plain 1-D positions (no rope deltas) the logits would differ
    model.model.rope_deltas = torch.zeros_like(model.model.rope_deltas)
    wrong = suffix_logits(model, cache, suffixes[:1], pad_id=0)
    assert (wrong[0] - reused[0]).abs().max() > 1e-4


def test_engines_agree_when_generate_starts_with_a_letter(questions):
    model, processor = tiny_llava(seed=3)
    vlm = VisionLanguageModel(model, processor, device="cpu")
    with torch.no_grad():  # make letters likely first tokens, so the comparison is not vacuous
        model.lm_head.weight[vlm.letter_ids] *= 40
    letters = {qid: letter for qid, letter, _ in vlm.letters(questions)}
    compared = 0
    for qid, _, first in vlm.generate(questions, max_new_tokens=1):
        if first in vlm.letter_ids:
            assert letters[qid] == LETTERS[vlm.letter_ids.index(first)]
            compared += 1
    assert compared >= len(questions) // 2


def installed_cache_keyword():
    """What the installed transformers calls the cache: its causal-LM outputs carry that field."""
    from dataclasses import fields

    from transformers.modeling_outputs import CausalLMOutputWithPast

    names = {f.name for f in fields(CausalLMOutputWithPast)}
    return "cache" if "cache" in names else "past_key_values"


def test_cache_keyword_follows_the_forward_signature(llava):
    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None): ...

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None): ...

    class Wrapper:  # a PEFT-style wrapper that names neither
        def forward(self, *args, **kwargs): ...

    assert cache_keyword(New()) == "cache"
    assert cache_keyword(Old()) == "past_key_values"
    assert cache_keyword(Wrapper()) == installed_cache_keyword()
    assert cache_keyword(llava.model) == installed_cache_keyword()


class CacheDeprecations:
    """Records every warning, and every message of transformers' own ``logger.warning_once``
    (which prints once per process, so it is patched rather than captured), that mentions the
    deprecated cache names."""

    def __init__(self, monkeypatch):
        import transformers.utils.generic as generic

        self.logged = []
        monkeypatch.setattr(generic.logger, "warning_once", lambda *args, **kwargs: self.logged.append(str(args)))
        self._catch = warnings.catch_warnings(record=True)

    def __enter__(self):
        self.caught = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)

    def messages(self):
        found = [f"{w.category.__name__}: {w.message}" for w in self.caught] + self.logged
        return [m for m in found if "past_key_values" in m or "cache_params" in m]


def test_engines_raise_no_cache_deprecation_warning(llava, questions, monkeypatch):
    group = questions[:3]
    with CacheDeprecations(monkeypatch) as record:
        prefix_text, _ = llava.split_prompt(group[0].prompt)
        cache, _ = prefix_cache(llava.model, llava._inputs(prefix_text, group[0].image))
        suffix_logits(llava.model, cache, [[5, 6, 7], [8, 9]], pad_id=llava.pad_id)
        assert len(list(llava.letters(group, batch_size=2))) == 3
        assert len(list(llava.generate(group[:1], max_new_tokens=2))) == 1
    assert record.messages() == []
    assert not [w for w in record.caught if issubclass(w.category, FutureWarning)
                and "finer_datasets" in str(w.filename)]


@pytest.mark.skipif(installed_cache_keyword() != "cache", reason="transformers before the past_key_values rename")
def test_the_deprecation_check_would_catch_the_old_keyword(llava, questions, monkeypatch):
    """Control for the test above: the old keyword does warn on this transformers."""
    prefix_text, _ = llava.split_prompt(questions[0].prompt)
    cache, _ = prefix_cache(llava.model, llava._inputs(prefix_text, questions[0].image))
    with CacheDeprecations(monkeypatch) as record:
        llava.model(input_ids=torch.tensor([[5, 6]]), past_key_values=cache, use_cache=True)
    assert any("FutureWarning" in m and "past_key_values" in m for m in record.messages())


def test_prefix_cache_needs_a_cache_from_the_model():
    class NoCache(torch.nn.Module):
        def forward(self, input_ids=None, cache=None, use_cache=None):
            from transformers.modeling_outputs import CausalLMOutputWithPast

            return CausalLMOutputWithPast(logits=torch.zeros(1, 1, 3))

    with pytest.raises(ValueError, match="returned no KV cache"):
        prefix_cache(NoCache(), {"input_ids": torch.tensor([[1, 2]])})


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llava")
    model, processor = tiny_llava()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def run_args(saved_model, sample_build, out, engine, *extra):
    return score_script.parse_args(["--model", str(saved_model), "--dataset", str(sample_build.out), "--engine", engine,
                                    "--out", str(out), "--limit", "3", "--device", "cpu", "--dtype", "float32", *extra])


@pytest.mark.parametrize("engine", ["generate", "letters"])
def test_baseline_script_end_to_end(saved_model, sample_build, tmp_path, engine):
    result = score_script.main(run_args(saved_model, sample_build, tmp_path, engine))
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len({line["question_id"] for line in lines}) == 4 * 3 * 2
    assert set(result["settings"]) == {"multi_obj", "multi_attr", "multi_rel", "wh"}
    assert (tmp_path / "report.json").is_file() and (tmp_path / "accuracy_by_k.png").is_file()
    if engine == "letters":
        assert all(len(line["probs"]) == 5 and line["response"] in LETTERS for line in lines)


class CountingModel:
    """Wraps a VisionLanguageModel and counts the questions it is asked."""

    def __init__(self, vlm):
        self.vlm, self.asked = vlm, []

    def letters(self, questions, **kwargs):
        questions = list(questions)
        self.asked += [q.question_id for q in questions]
        return self.vlm.letters(questions, **kwargs)


def test_baseline_script_resumes_without_recomputing(saved_model, sample_build, tmp_path, llava):
    args = run_args(saved_model, sample_build, tmp_path, "letters")
    score_script.main(args)
    path = tmp_path / "predictions.jsonl"
    complete = path.read_text().splitlines()
    path.write_text("\n".join(complete[:5]) + "\n" + complete[5][:20])  # crash in the middle of line 6
    counting = CountingModel(VisionLanguageModel.from_pretrained(str(saved_model), dtype="float32", device="cpu"))
    score_script.main(args, vlm=counting)
    resumed = path.read_text().splitlines()
    assert resumed[:5] == complete[:5]
    assert len(counting.asked) == len(complete) - 5
    assert sorted(resumed) == sorted(complete)


def test_config_file_and_flags(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: some/model\nengine: letters\nbatch-size: 8\nsettings: [wh]\n")
    args = score_script.parse_args(["--config", str(config), "--batch_size", "4"])
    assert (args.model, args.engine, args.batch_size, args.settings) == ("some/model", "letters", 4, ["wh"])
    # the same hyphenated names as `finer` (underscores still accepted), the dataset as a positional
    args = score_script.parse_args(["out/x", "--model", "m", "--batch-size", "2", "--max-new-tokens", "3",
                                    "--setting", "multi_object", "--setting", "multi-rel", "--settings", "wh"])
    assert (args.dataset, args.batch_size, args.max_new_tokens) == ("out/x", 2, 3)
    assert args.settings == ["multi_obj", "multi_rel", "wh"]  # official names and aliases, in the paper's order
    assert (args.prompt, args.engine) == ("official", "generate")


@pytest.mark.parametrize("argv, message", [
    (["--model", "m", "--setting", "multi_objects"], "--setting 'multi_objects' is not a FINER setting"),
    (["--model", "m", "--engine", "vllm"], "--engine 'vllm'"),
    (["--model", "m", "--prompt", "mine"], "--prompt 'mine' is not a prompt template"),
    (["--model", "m", "--engine", "openai"], "--engine openai needs --base-url"),
    (["--model", "m", "--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--model", "m", "--parser", "lenient"], "--parser 'lenient'"),
    (["--engine", "letters"], "--model is required"),
])
def test_bad_options_are_one_line_errors(argv, message, capsys):
    assert score_script.cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_a_missing_model_folder_is_a_one_line_error(sample_build, tmp_path, capsys):
    code = score_script.cli([str(sample_build.out), "--model", str(tmp_path / "no-such-model"), "--out",
                             str(tmp_path / "run"), "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        f"error: --model {tmp_path / 'no-such-model'}: no such folder"]
    # the failed start left no answers: a corrected command is not refused as "another run"
    code = score_script.cli([str(sample_build.out), "--model", str(tmp_path / "still-missing"), "--out",
                             str(tmp_path / "run"), "--limit", "1"])
    assert code == 2 and "no such folder" in capsys.readouterr().err


class OracleModel:
    """A stand-in for VisionLanguageModel.generate that answers right and records what it was asked."""

    def __init__(self, answers):
        self.answers, self.prompts, self.images, self.max_new_tokens = answers, [], [], None

    def generate(self, questions, *, max_new_tokens):
        self.max_new_tokens = max_new_tokens
        for q in questions:
            self.prompts.append(q.prompt)
            self.images.append((q.image_key, id(q.image)))
            yield q.question_id, self.answers[q.question_id], 0


def oracle_answers(sample_build):
    from finer_datasets.core.reader import iter_records
    from finer_datasets.mcq.records import pair_rows

    return {p[polarity]["question_id"]: p[polarity]["answer"] for r in iter_records(sample_build.out, sample_build.manifest)
            for p in pair_rows(r) for polarity in ("positive", "negative")}


def test_questions_come_per_image_with_the_official_prompt(sample_build, tmp_path):
    model = OracleModel(oracle_answers(sample_build))
    args = score_script.parse_args([str(sample_build.out), "--model", "oracle", "--out", str(tmp_path), "--setting",
                                    "multi_attribute", "--bootstrap", "0"])
    result = score_script.main(args, vlm=model)
    assert model.max_new_tokens == 2 and list(result["settings"]) == ["multi_attr"]
    assert result["overall"]["paired_accuracy"] == 100.0
    assert all(p.startswith("Select the best answer for the multiple-choice question.\n\n") for p in model.prompts)
    keys = [key for key, _ in model.images]
    assert keys == sorted(keys, key=keys.index)  # one image's questions are consecutive
    decoded = {}
    for key, pid in model.images:
        decoded.setdefault(key, set()).add(pid)
    assert all(len(ids) == 1 for ids in decoded.values())  # each image decoded once for all its questions
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["prompt"]["name"] == "official" and report["prompt"]["max_new_tokens"] == 2
    assert report["dataset"]["manifest_digest"] == sample_build.manifest["digest"]
    assert "Prompt template: `official`, at most 2 new tokens." in (tmp_path / "report.md").read_text()
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["engine"], run["model"], run["prompt"], run["dtype"], run["settings"]) == (
        "generate", "oracle", "official", "auto", ["multi_attr"])


def test_the_appendix_d_prompt_is_a_named_alternative(sample_build, tmp_path):
    model = OracleModel(oracle_answers(sample_build))
    args = score_script.parse_args([str(sample_build.out), "--model", "oracle", "--out", str(tmp_path), "--limit",
                                    "1", "--prompt", "appendix-d", "--bootstrap", "0"])
    score_script.main(args, vlm=model)
    assert model.max_new_tokens == 3
    assert all("\nA. " in p and p.endswith("(A, B, C, D, or E).") for p in model.prompts)


def test_entropy_filter_with_a_local_letters_discriminator(saved_model, tmp_path):
    from finer_datasets.cli import main
    from finer_datasets.testing.scripted import ScriptedServer

    with ScriptedServer() as server:
        code = main(["build", "compre_cap", "--sample", "--out", str(tmp_path / "o"), "--no-progress",
                     "--llm-base-url", server.url, "--llm-model", "scripted", "--llm-stages", "negatives",
                     "--mllm-local", str(saved_model), "--mllm-rounds", "1", "--theta-obj", "2.0",
                     "--theta-attr", "2.0", "--theta-rel", "2.0"])
    assert code == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    filt = manifest["llm"]["entropy_filter"]
    assert filt["discriminator"] == f"hf-letters:{saved_model}"
    # with theta above log(5) every confident-or-not wrong pick is regenerated once
    levels = filt["levels"]
    assert {v["theta"] for v in levels.values()} == {2.0}
    assert sum(v["regenerated"] for v in levels.values()) > 0
    assert all(0 <= v["discriminator_accuracy"] <= 100 for v in levels.values())
    # replaying needs neither the LLM nor the local model
    assert main(["build", "compre_cap", "--sample", "--out", str(tmp_path / "r"), "--no-progress",
                 "--replay", str(tmp_path / "o" / "transcript.jsonl")]) == 0
    assert (tmp_path / "r" / "manifest.json").read_bytes() == (tmp_path / "o" / "manifest.json").read_bytes()
