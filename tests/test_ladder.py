"""FINER-Ladder (paper, section 1 with Fig. 1; E.7 with Fig. 12): built from the benchmark builds of the
bundled samples, offline, from the command line; one contradiction per query; loaded, scored by `finer
score` and through the lmms-eval task; the per-level report; bad sources refused in one line."""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import jsonschema
import pytest
from test_eval_lmms import load_utils

from finer_datasets import load_finer, verify
from finer_datasets.core.reader import iter_records
from finer_datasets.core.validation import load_schema, schema_path
from finer_datasets.eval.scoring import score
from finer_datasets.mcq.construct import QUESTION_TEMPLATE
from finer_datasets.mcq.ladder import LEVELS, find_chain, ladder_pairs, ladder_phrase
from finer_datasets.testing.builder_tests import folder_files

FINER = str(Path(sys.executable).parent / "finer")
RELEASE = Path(__file__).parent / "fixtures" / "finer_release" / "tables"
SETTINGS = ("mcq_compre_cap", "mcq_docci", "yesno_compre_cap", "yesno_docci")


def finer(*args, cwd):
    return subprocess.run([FINER, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The commands of docs/analyses.md: both samples built, then the ladder built from them."""
    folder = tmp_path_factory.mktemp("ladder")
    for args in (("build", "compre_cap", "--sample", "--out", "sources/compre_cap"),
                 ("build", "docci", "--sample", "--out", "sources/docci"),
                 ("build", "ladder", "--source", "sources", "--out", "ladder")):
        run = finer(*args, cwd=folder)
        assert run.returncode == 0, run.stderr
    return folder


def records(folder):
    return list(iter_records(folder, verify(folder)))


def test_the_ladder_builds_from_the_sample_builds_and_replays_byte_for_byte(work):
    manifest = verify(work / "ladder")
    counts = manifest["counts"]
    # measured on the bundled samples: 7 of 12 FINER-CompreCap images and 9 of 24 FINER-DOCCI images have a chain
    assert counts["sources"] == {"compre_cap": {"images": 12, "with_ladder": 7, "drawn": 7},
                                 "docci": {"images": 24, "with_ladder": 9, "drawn": 9}}
    assert counts["pairs_by_level"] == {s: {str(level): 7 if s.endswith("compre_cap") else 9 for level in range(1, 8)}
                                        for s in SETTINGS}
    assert counts["skips"] == {"no_full_ladder": 20} and counts["images"] == 16
    assert [s["name"] for s in manifest["sources"]] == ["compre_cap manifest", "docci manifest"]
    assert [s["dataset"] for s in manifest["provenance"]["sources"]] == ["compre_cap", "docci"]
    assert manifest["builder"]["options"] == {"draw": "compre_cap=320,docci=1687"}
    run = finer("build", "ladder", "--source", "sources", "--out", "again", cwd=work)
    assert run.returncode == 0, run.stderr
    assert folder_files(work / "ladder") == folder_files(work / "again")
    shutil.rmtree(work / "again")


def test_every_record_validates_and_every_query_holds_exactly_one_contradiction(work):
    validator = jsonschema.Draft202012Validator(load_schema(schema_path("ladder_image")))
    for record in records(work / "ladder"):
        validator.validate(record)
        chain = record["ladder"]
        assert [e["contradiction"] for e in chain] == [c for _, _, _, c in LEVELS]
        assert len(record["pairs"]) == 14
        for pair in record["pairs"]:
            level, pos, neg = pair["level"], pair["positive"], pair["negative"]
            element = chain[level - 1]
            assert pair["elements"] == [e["text"] for e in chain[:level]] and pair["k"] == level
            assert pair["negated"]["positive"] == element["text"]
            assert pair["negated"]["negative"] in element["negatives"]
            # the element a level adds is the last thing its description says: the negative query is the
            # positive one with that element, and only it, replaced
            head, found, tail = pos["question"].rpartition(element["text"])
            assert found and tail == " in this image?"
            assert neg["question"] == head + pair["negated"]["negative"] + tail
            if pair["form"] == "yesno":
                assert pos["options"] == neg["options"] == ["Yes", "No"] and (pos["answer"], neg["answer"]) == ("A", "B")
            else:
                letter = "ABCDE".index(neg["answer"])
                assert neg["options"][letter] == pos["question"].replace("Can you see ", "No, but I can see ", 1)[:-1] + "."
                assert pos["options"]["ABCDE".index(pos["answer"])].startswith("Yes, I can see ")


def test_draw_caps_the_images_per_source_with_the_seed(work):
    run = finer("build", "ladder", "--source", "sources", "--out", "drawn", "--draw", "compre_cap=3,docci=all", cwd=work)
    assert run.returncode == 0, run.stderr
    counts = verify(work / "drawn")["counts"]["sources"]
    assert counts["compre_cap"] == {"images": 12, "with_ladder": 7, "drawn": 3} and counts["docci"]["drawn"] == 9
    every = {r["image_id"]: r for r in records(work / "ladder")}
    for record in records(work / "drawn"):  # a drawn image has the ladder it has in the full build
        assert record == every[record["image_id"]]
    shutil.rmtree(work / "drawn")


def test_the_bundled_sample_builds(tmp_path):
    run = finer("build", "ladder", "--sample", "--out", "ladder", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert verify(tmp_path / "ladder")["counts"]["samples"] == {"test": 3}


def test_load_dataset_and_load_finer(work):
    out = str(work / "ladder")
    rows = datasets.load_dataset(out, split="test")
    assert len(rows) == 16 and rows[0]["jpg"].size[0] > 0
    questions = load_finer(out, "questions", split="test")
    assert len(questions) == 2 * 224 and set(questions["setting"]) == set(SETTINGS)
    assert questions[0]["image"].size == rows[0]["jpg"].size
    pairs = load_finer(out, "pairs", split="test")
    assert sorted(set(pairs["level"])) == list(range(1, 8)) and {"form", "contradiction"} <= set(pairs.column_names)


def answers_by_level(folder, right_up_to):
    """Right at every positive and at the negatives of levels <= right_up_to; above, the false query accepted."""
    out = {}
    for record in records(folder):
        for pair in record["pairs"]:
            pos, neg = pair["positive"], pair["negative"]
            out[pos["question_id"]] = pos["answer"] if pair["form"] == "mcq" else "Yes"
            affirm = "ABCDE"[neg["option_types"].index("affirm")]
            out[neg["question_id"]] = neg["answer"] if pair["level"] <= right_up_to else affirm
    return out


def write_jsonl(path, answers):
    path.write_text("".join(json.dumps({"question_id": q, "response": r}) + "\n" for q, r in answers.items()))


def test_finer_score_reports_accuracy_and_fp_fn_per_level(work):
    write_jsonl(work / "answers.jsonl", answers_by_level(work / "ladder", 3))
    run = finer("score", "ladder", "--predictions", "answers.jsonl", "--out", "report", cwd=work)
    assert run.returncode == 0, run.stderr
    report = json.loads((work / "report" / "report.json").read_text())
    for setting in SETTINGS:
        levels = report["settings"][setting]["by_level"]
        assert [levels[str(n)]["negative_accuracy"] for n in range(1, 8)] == [100.0] * 3 + [0.0] * 4
        assert [levels[str(n)]["false_positive_rate"] for n in range(1, 8)] == [0.0] * 3 + [100.0] * 4
        assert {levels[str(n)]["false_negative_rate"] for n in range(1, 8)} == {0.0}
        assert report["settings"][setting]["paired_accuracy"] == pytest.approx(300 / 7)
    assert report["settings"]["yesno_docci"]["random_baselines"] == {"uniform": 25.0, "polarity_aware": 25.0}
    assert report["settings"]["mcq_docci"]["random_baselines"]["uniform"] == 4.0
    assert report["intervals"]["by_level.ci95"].startswith("Wilson")
    text = (work / "report" / "report.md").read_text()
    assert "## Granularity ladder: accuracy by level (paper, Fig. 1 and 12)" in text and "### `yesno_docci`" in text
    assert "| 4 | 9 | 0.0 | 0.0–29.9 | 100.0 | 0.0 | 100.0 | 0.0 |" in text
    for name in ("accuracy_by_level.png", "fp_fn_by_level.png"):
        assert (work / "report" / name).read_bytes()[:4] == b"\x89PNG" and f"({name})" in text


def test_only_pairs_with_a_level_add_the_ladder_part(sample_build, tmp_path):
    from finer_datasets.eval.report import report_json, report_markdown, write_report

    pairs = [p for r in records(sample_build.out) for p in r["pairs"]]
    answers = {p[q]["question_id"]: p[q]["answer"] for p in pairs for q in ("positive", "negative")}
    ordinary = score(pairs, answers, bootstrap=0)
    assert all("by_level" not in block for block in [*ordinary["settings"].values(), ordinary["overall"]])
    assert "by_level" not in report_json(ordinary) and "Granularity" not in report_markdown(ordinary)
    written = write_report(ordinary, tmp_path / "ordinary")
    assert sorted(p.name for p in written) == ["accuracy_by_k.png", "fp_fn_rates.png", "report.json", "report.md"]
    leveled = score([{**p, "level": 1 + i % 7} for i, p in enumerate(pairs)], answers, bootstrap=0)
    assert sum(g["n_pairs"] for g in leveled["overall"]["by_level"].values()) == len(pairs)
    assert "## Granularity ladder" in report_markdown(leveled)
    written = write_report(leveled, tmp_path / "leveled")
    assert {"accuracy_by_level.png", "fp_fn_by_level.png"} <= {p.name for p in written}


def test_the_lmms_eval_task_scores_it_as_finer_score_does(work):
    run = finer("export", "ladder", "--format", "lmms-eval", "--out", "tasks", cwd=work)
    assert run.returncode == 0, run.stderr
    assert "--tasks finer_ladder" in run.stdout
    task = (work / "tasks" / "finer_ladder.yaml").read_text()
    assert "process_docs: !function utils.questions_view" in task and "include: _finer_ladder_template_yaml" in task
    utils = load_utils(work / "tasks")
    docs = utils.questions_view(datasets.load_dataset(str(work / "ladder"), split="test"))
    answers = answers_by_level(work / "ladder", 5)
    items = [utils.process_results(doc, [answers[doc["question_id"]]])["acc_paired"] for doc in docs]
    assert len(items) == 448 and utils.doc_to_visual(docs[0])[0].mode == "RGB"
    # lmms-eval --log_samples writes one line per document holding our item; finer score reads them back
    samples = work / "lmms" / "model" / "20260101_000000_samples_finer_ladder.jsonl"
    samples.parent.mkdir(parents=True)
    samples.write_text("".join(json.dumps({"doc_id": i, "acc_paired": item}) + "\n" for i, item in enumerate(items)))
    run = finer("score", "ladder", "--from", "lmms-eval", "--predictions", "lmms", "--out", "lmms-report", cwd=work)
    assert run.returncode == 0, run.stderr
    report = json.loads((work / "lmms-report" / "report.json").read_text())
    assert utils.paired_accuracy(items) == pytest.approx(report["overall"]["paired_accuracy"]) == pytest.approx(500 / 7)
    assert report["settings"]["mcq_compre_cap"]["by_level"]["6"]["negative_accuracy"] == 0.0


# ----------------------------------------------------------------- bad sources: one line, documented exit


def test_bad_sources_are_refused_in_one_line(work, tmp_path):
    cases = []
    (tmp_path / "empty").mkdir()
    cases.append((("--source", tmp_path / "empty"), 2, "no built FINER benchmark"))
    cases.append((("--source", work / "ladder"), 2, "is not a FINER benchmark build with scene graphs"))
    both = tmp_path / "twice"
    both.mkdir()
    for name in ("a", "b"):
        shutil.copytree(work / "sources" / "compre_cap", both / name)
    cases.append((("--source", both), 2, "two builds of compre_cap"))
    tampered = tmp_path / "tampered"
    shutil.copytree(work / "sources" / "compre_cap", tampered)
    shard = next((tampered / "data").glob("*.tar"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    cases.append((("--source", tampered), 3, "does not verify"))
    run = finer("build", "compre_cap", "--from-release", RELEASE, "--out", tmp_path / "release" / "compre_cap", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    cases.append((("--source", tmp_path / "release"), 2, "has no scene graphs (a build imported from the authors' release?)"))
    cases.append((("--source", work / "sources", "--draw", "docci=0"), 2, "--draw 'docci=0'"))
    cases.append((("--source", work / "sources", "--draw", "tuning=5"), 2, "--draw names tuning, not a source here"))
    for args, code, message in cases:
        run = finer("build", "ladder", *args, "--out", tmp_path / "out", cwd=tmp_path)
        assert run.returncode == code, (args, run.stderr)
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and message in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["vlmevalkit", "official-csv"])
def test_five_option_exports_refuse_the_yes_no_pairs_in_one_line(work, tmp_path, fmt):
    run = finer("export", work / "ladder", "--format", fmt, "--out", tmp_path / "x.out", cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "five-option questions" in run.stderr and "--format lmms-eval" in run.stderr
    assert not (tmp_path / "x.out").exists()


def test_one_build_is_a_source_too_and_a_graph_without_a_chain_has_no_ladder(work, tmp_path):
    run = finer("build", "ladder", "--source", work / "sources" / "compre_cap", "--out", tmp_path / "out",
                "--draw", "compre_cap=1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert verify(tmp_path / "out")["counts"]["sources"]["compre_cap"]["drawn"] == 1
    graph = {"objects": [{"id": "o0", "name": "cat", "attributes": [], "negatives": ["dog", "fox", "owl", "cow"]}],
             "relations": []}
    assert find_chain(graph, random.Random(0)) is None


# ----------------------------------------------------------------- the pure construction


def test_ladder_phrases_grow_one_element_per_level():
    units = ["cat", "with black fur", "with a long tail", "lying on the sofa", "with red cushions",
             "next to the lamp", "with a white shade"]
    assert ladder_phrase(units[:1]) == "the cat"
    assert ladder_phrase(units[:3]) == "the cat with black fur and with a long tail"
    assert ladder_phrase(units) == ("the cat with black fur and with a long tail lying on the sofa with red cushions "
                                    "and next to the lamp with a white shade")
    nested = [*units[:5], "that is next to the lamp", "with a white shade"]
    assert ladder_phrase(nested, nested=True).endswith("the sofa with red cushions that is next to the lamp with a white shade")
    with pytest.raises(ValueError):
        ladder_phrase([])


def test_construction_is_a_pure_function_of_record_and_seed(work):
    record = records(work / "ladder")[0]
    source = next(r for r in records(work / "sources" / record["source"]["dataset"])
                  if r["image_id"] == record["image_id"])
    rng = random.Random(f"0:ladder:{record['source']['dataset']}:{record['image_id']}")
    chain = find_chain(source["scene_graph"], rng)
    pairs = ladder_pairs(chain, key=record["pairs"][0]["pair_id"].split("_", 1)[1].rsplit("_", 1)[0],
                         source=record["source"]["dataset"], seed=0)
    assert pairs == record["pairs"] and chain.to_list() == record["ladder"]
    assert QUESTION_TEMPLATE.format(X=ladder_phrase([e["text"] for e in record["ladder"]], chain.nested)) == \
        next(p for p in pairs if p["pair_id"].endswith("_l7"))["positive"]["question"]


# ----------------------------------------------------------------- the guide's commands (docs/analyses.md)

#: the runnable blocks of the ladder and position sections of docs/analyses.md, in order, as written there
def guide_blocks():
    """The runnable blocks of docs/analyses.md, in order (the guide a user follows)."""
    from test_docs_commands import blocks

    text = (Path(__file__).resolve().parents[1] / "docs" / "analyses.md").read_text("utf-8")
    return [(lang, code) for lang, code, reason in blocks(text) if not reason]


@pytest.mark.slow
def test_the_guide_runs_as_written(tmp_path):
    import os

    from test_docs_commands import _script

    (tmp_path / "baselines").symlink_to(Path(__file__).resolve().parents[1] / "baselines")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "TOKENIZERS_PARALLELISM": "false"}
    guide = guide_blocks()
    assert len(guide) >= 6
    for lang, code in guide:
        run = subprocess.run(["bash", str(_script(lang, code, tmp_path))], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=900)
        assert run.returncode == 0, f"block failed:\n{code}\n--- stderr ---\n{run.stderr[-4000:]}"
    report = json.loads((tmp_path / "runs" / "ladder" / "report.json").read_text())
    assert sorted(report["settings"]) == sorted(SETTINGS) and report["n_pairs"] == 224
    assert all(len(block["by_level"]) == 7 for block in report["settings"].values())
    assert (tmp_path / "runs" / "ladder" / "accuracy_by_level.png").is_file()
    assert (tmp_path / "tasks" / "ladder" / "finer_ladder.yaml").is_file()
    positions = json.loads((tmp_path / "runs" / "positions" / "report.json").read_text())
    assert {block["by_position"][p]["paired_accuracy"] for block in positions["settings"].values()
            for p in ("1", "2", "3")} == {100.0}
    compare = (tmp_path / "runs" / "compare" / "compare.md").read_text()
    assert "runs/tiny" in compare or "tiny" in compare
    assert (tmp_path / "runs" / "compare" / "compare.csv").is_file()
