"""`finer compare`: runs side by side on the pairs they share, with a paired test per setting.

Runs are made as a user makes them, in subprocesses: predictions files written here and scored by
`finer score`, and two runs of `baselines/score.py --engine openai` against the scripted stand-in
server. McNemar's statistic and p are computed by hand from the discordant counts."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from finer_datasets.eval.compare import EXACT_BELOW, mcnemar, paired_bootstrap
from finer_datasets.eval.report import report_json
from finer_datasets.eval.scoring import pair_records, score
from finer_datasets.testing.scripted import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]


def finer(*args, cwd=None):
    exe = Path(sys.executable).parent / "finer"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "finer_datasets.cli"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def one_error_line(out, code):
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def chi2_by_hand(b, c):
    """(|b - c| - 1)^2 / (b + c) and its upper tail with 1 degree of freedom, P(Z^2 > x) = erfc(sqrt(x / 2))."""
    x = (abs(b - c) - 1) ** 2 / (b + c)
    return x, math.erfc(math.sqrt(x / 2))


def exact_by_hand(b, c):
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n)


@pytest.fixture(scope="module")
def pairs(sample_build):
    return pair_records(datasets.load_dataset(str(sample_build.out), split="test"))


def write_answers(path, pairs, wrong):
    """Right answers to every question, except the negative question of the pairs in ``wrong``."""
    with open(path, "w") as f:
        for pair in pairs:
            for polarity in ("positive", "negative"):
                q = pair[polarity]
                letter = q["answer"]
                if polarity == "negative" and pair["pair_id"] in wrong:
                    letter = "ABCDE"[("ABCDE".index(letter) + 1) % 5]
                f.write(json.dumps({"question_id": q["question_id"], "response": letter}) + "\n")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, sample_build, pairs):
    """Run A misses multi_obj pairs 0-9 and wh pairs 0-1; run B misses multi_obj pairs 10-39 and wh pairs 2-6."""
    work = tmp_path_factory.mktemp("compare")
    ids = {s: [p["pair_id"] for p in pairs if p["setting"] == s] for s in ("multi_obj", "wh")}
    wrong = {"a": set(ids["multi_obj"][:10]) | set(ids["wh"][:2]),
             "b": set(ids["multi_obj"][10:40]) | set(ids["wh"][2:7])}
    for name in ("a", "b"):
        write_answers(work / f"{name}.jsonl", pairs, wrong[name])
        out = finer("score", sample_build.out, "--predictions", work / f"{name}.jsonl", "--out", work / f"run-{name}",
                    "--name", f"model-{name}", "--bootstrap", "0")
        assert out.returncode == 0, out.stderr
    return work


def rows_of(csv_path):
    return {(r["model"], r["setting"]): r for r in csv.DictReader(csv_path.open(encoding="utf-8"))}


def test_compare_reproduces_mcnemar_by_hand(two_runs, sample_build):
    work = two_runs
    out = finer("compare", work / "run-a", work / "run-b", "--out", work / "cmp")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (work / "cmp").iterdir()) == [".finer-output.json", "compare.csv", "compare.md",
                                                                "compare.png"]
    rows = rows_of(work / "cmp" / "compare.csv")
    counts = sample_build.manifest["counts"]["pairs"]
    # multi_obj: b = pairs only A got right = B's 30 misses, c = A's 10 misses; 40 >= 25: chi-square
    obj = rows[("model-b", "multi_obj")]
    x, p = chi2_by_hand(30, 10)
    assert (int(obj["baseline_only"]), int(obj["model_only"]), obj["test"]) == (30, 10, "mcnemar-chi2")
    assert float(obj["statistic"]) == pytest.approx(x, rel=1e-9) == 361 / 40
    assert float(obj["p_value"]) == pytest.approx(p, rel=1e-8)
    assert float(obj["delta"]) == pytest.approx(100 * (10 - 30) / counts["multi_obj"])
    base = rows[("model-a", "multi_obj")]
    assert base["baseline"] == "yes" and base["test"] == "" and int(base["correct"]) == counts["multi_obj"] - 10
    # wh: b = 5, c = 2, under 25 discordant pairs: the exact binomial test, no statistic
    wh = rows[("model-b", "wh")]
    assert (int(wh["baseline_only"]), int(wh["model_only"]), wh["test"], wh["statistic"]) == (5, 2, "mcnemar-exact", "")
    assert float(wh["p_value"]) == pytest.approx(exact_by_hand(5, 2)) == pytest.approx(2 * (1 + 7 + 21) / 128)
    # settings where both runs are always right: nothing differs, p = 1
    attr = rows[("model-b", "multi_attr")]
    assert (int(attr["baseline_only"]), int(attr["model_only"]), float(attr["p_value"])) == (0, 0, 1.0)
    overall = rows[("model-b", "overall")]
    assert int(overall["pairs"]) == sum(counts.values())
    assert float(overall["statistic"]) == pytest.approx(chi2_by_hand(35, 12)[0])
    md = (work / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "| model-a (baseline) |" in md and "χ², continuity-corrected" in md and "exact binomial" in md
    assert f"| model-b | multi_obj | {counts['multi_obj']} | 30 | 10 |" in md and "9.025" in md
    assert "model-b vs model-a, multi_obj" in out.stdout and "χ² with continuity correction" in out.stdout
    assert (work / "cmp" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same runs, the other way round and with --baseline: b and c swap, the statistic stays
    again = finer("compare", work / "run-a", work / "run-b", "--baseline", work / "run-b", "--out", work / "cmp2")
    assert again.returncode == 0, again.stderr
    swapped = rows_of(work / "cmp2" / "compare.csv")[("model-a", "multi_obj")]
    assert (int(swapped["baseline_only"]), int(swapped["model_only"])) == (10, 30)
    assert swapped["statistic"] == obj["statistic"]


def test_mcnemar_switches_to_chi_square_at_25_discordant_pairs():
    assert mcnemar(0, 0) == {"test": "mcnemar-exact", "method": "exact binomial (b + c = 0 < 25)", "statistic": None,
                             "p_value": 1.0}
    assert mcnemar(3, 9)["p_value"] == pytest.approx(2 * (1 + 12 + 66 + 220) / 4096)
    assert mcnemar(12, EXACT_BELOW - 12 - 1)["test"] == "mcnemar-exact"
    chi = mcnemar(10, 15)
    assert chi["test"] == "mcnemar-chi2" and chi["statistic"] == pytest.approx(16 / 25)
    assert mcnemar(20, 20)["statistic"] == 0 and mcnemar(20, 20)["p_value"] == 1.0
    assert mcnemar(60, 35)["p_value"] == pytest.approx(chi2_by_hand(60, 35)[1])
    # the tail of chi-square with one degree of freedom: 3.8415 is its 95% quantile
    assert math.erfc(math.sqrt(3.841458820694124 / 2)) == pytest.approx(0.05)


def test_the_paired_bootstrap_is_seeded(two_runs):
    work = two_runs
    outs = []
    for name, seed in (("boot1", 3), ("boot2", 3), ("boot3", 4)):
        out = finer("compare", work / "run-a", work / "run-b", "--test", "bootstrap", "--bootstrap", "500", "--seed",
                    seed, "--out", work / name)
        assert out.returncode == 0, out.stderr
        outs.append((work / name / "compare.csv").read_bytes())
    assert outs[0] == outs[1] != outs[2]
    obj = rows_of(work / "boot1" / "compare.csv")[("model-b", "multi_obj")]
    assert obj["test"] == "paired-bootstrap" and float(obj["delta_ci95_low"]) < float(obj["delta"]) < 0
    assert float(obj["delta_ci95_high"]) < 0 and float(obj["p_value"]) < 0.05
    assert float(rows_of(work / "boot1" / "compare.csv")[("model-b", "multi_attr")]["p_value"]) == 1.0
    assert "Paired bootstrap over pairs (500 resamples, seed 3)" in (work / "boot1" / "compare.md").read_text()


def test_the_bootstrap_p_is_never_zero():
    better = paired_bootstrap([False] * 30, [True] * 30, resamples=999, seed=0)
    assert better["p_value"] == 2 / 1000 and better["delta_ci95"] == [100.0, 100.0]
    assert paired_bootstrap([True, False] * 10, [True, False] * 10, resamples=99, seed=0)["p_value"] == 1.0


def test_pairs_jsonl_leaves_report_json_unchanged(sample_build, pairs, two_runs):
    answers = {json.loads(line)["question_id"]: json.loads(line)["response"]
               for line in (two_runs / "a.jsonl").read_text().splitlines()}
    kept = score(pairs, answers, bootstrap=0, keep_pairs=True)
    plain = score(pairs, answers, bootstrap=0)
    assert report_json(kept) == report_json(plain) and "pairs" not in plain
    lines = [json.loads(line) for line in (two_runs / "run-a" / "pairs.jsonl").read_text().splitlines()]
    assert [row["pair_id"] for row in lines] == [p["pair_id"] for p in pairs]
    assert set(lines[0]) == {"pair_id", "setting", "k", "position", "strict", "official"}
    assert sum(not row["strict"] for row in lines) == 12 and all(row["position"] >= 1 for row in lines)
    assert "pairs" not in json.loads((two_runs / "run-a" / "report.json").read_text())


def test_scripted_runs_with_different_prompts(sample_build, tmp_path):
    """Two runs of baselines/score.py against the scripted server, asked with two prompt templates
    (the scripted model's letter depends on the question text, so they answer differently)."""
    with ScriptedServer() as server:
        for name, prompt in (("official", "official"), ("appendix", "appendix-d")):
            out = subprocess.run([sys.executable, str(ROOT / "baselines" / "score.py"), str(sample_build.out),
                                  "--engine", "openai", "--base-url", server.url, "--model", "scripted-vl",
                                  "--prompt", prompt, "--limit", "12", "--bootstrap", "0", "--out",
                                  str(tmp_path / name)], capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr
    runs = [tmp_path / "official", tmp_path / "appendix"]
    refused = finer("compare", *runs, "--out", tmp_path / "cmp")
    line = one_error_line(refused, 2)
    assert "different prompts (`official`, at most 2 new tokens vs `appendix-d`, at most 3 new tokens)" in line
    assert "--allow-different-prompts" in line and not (tmp_path / "cmp").exists()
    out = finer("compare", *runs, "--allow-different-prompts", "--out", tmp_path / "cmp")
    assert out.returncode == 0, out.stderr
    outcome = [{json.loads(x)["pair_id"]: json.loads(x)["strict"] for x in (r / "pairs.jsonl").read_text().splitlines()}
               for r in runs]
    rows = rows_of(tmp_path / "cmp" / "compare.csv")
    for setting in ("multi_obj", "multi_attr", "multi_rel", "wh", "overall"):
        ids = [pid for pid in outcome[0] if setting == "overall" or pid.startswith(setting + "_")]
        b = sum(outcome[0][i] and not outcome[1][i] for i in ids)
        c = sum(outcome[1][i] and not outcome[0][i] for i in ids)
        row = rows[("scripted-vl (" + str(runs[1]) + ")", setting)]
        assert (int(row["pairs"]), int(row["baseline_only"]), int(row["model_only"])) == (len(ids), b, c)
        hand = exact_by_hand(b, c) if b + c < EXACT_BELOW else chi2_by_hand(b, c)[1]
        assert float(row["p_value"]) == pytest.approx(hand, rel=1e-8)
    assert "--allow-different-prompts" in (tmp_path / "cmp" / "compare.md").read_text()


def test_different_datasets_are_refused_unless_allowed(two_runs, tmp_path):
    other = tmp_path / "run-other"
    shutil.copytree(two_runs / "run-b", other)
    report = json.loads((other / "report.json").read_text())
    report["dataset"]["manifest_digest"] = "sha256:" + "0" * 64
    (other / "report.json").write_text(json.dumps(report))
    line = one_error_line(finer("compare", two_runs / "run-a", other, "--out", tmp_path / "cmp"), 2)
    assert "different datasets" in line and "sha256:000000000000" in line and "--allow-different-datasets" in line
    assert finer("compare", two_runs / "run-a", other, "--allow-different-datasets", "--out",
                 tmp_path / "cmp").returncode == 0


FILES = [".finer-output.json", "compare.csv", "compare.md", "compare.png"]


def test_output_rules(two_runs, tmp_path):
    runs = (two_runs / "run-a", two_runs / "run-b")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "compare.md").write_text("# my own notes\n")
    line = one_error_line(finer("compare", *runs, "--out", mine, "--overwrite"), 6)
    assert "holds no previous comparison" in line
    assert [p.name for p in mine.iterdir()] == ["compare.md"] and (mine / "compare.md").read_text() == "# my own notes\n"
    assert "is inside the source folder" in one_error_line(finer("compare", *runs, "--out", runs[0] / "c"), 6)
    assert "is or contains the input" in one_error_line(finer("compare", *runs, "--out", runs[1]), 6)
    assert not (runs[0] / "c").exists()
    out = tmp_path / "cmp"
    assert finer("compare", *runs, "--out", out).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert json.loads((out / ".finer-output.json").read_text())["command"] == "finer compare"
    first = (out / "compare.csv").read_bytes()
    assert "--overwrite" in one_error_line(finer("compare", *runs, "--out", out), 6)
    assert finer("compare", *runs, "--out", out, "--overwrite").returncode == 0
    assert (out / "compare.csv").read_bytes() == first  # same runs: the same bytes
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cmp.finer-build")]  # no staging folder left
    (out / "notes.txt").write_text("keep me")  # a file added to an earlier comparison is never removed
    assert "no comparison wrote (notes.txt)" in one_error_line(finer("compare", *runs, "--out", out, "--overwrite"), 6)
    assert (out / "notes.txt").read_text() == "keep me"


def test_bad_runs_are_one_line(two_runs, tmp_path):
    a, b = two_runs / "run-a", two_runs / "run-b"
    assert "at least two" in one_error_line(finer("compare", a, "--out", tmp_path / "o"), 2)
    assert "given twice" in one_error_line(finer("compare", a, a, "--out", tmp_path / "o"), 2)
    assert "not one of the RUN_DIR" in one_error_line(finer("compare", a, b, "--baseline", tmp_path, "--out",
                                                            tmp_path / "o"), 2)
    (tmp_path / "empty").mkdir()
    assert "no report.json" in one_error_line(finer("compare", a, tmp_path / "empty", "--out", tmp_path / "o"), 2)
    old = tmp_path / "old"
    shutil.copytree(b, old)
    (old / "pairs.jsonl").unlink()
    assert "no pairs.jsonl" in one_error_line(finer("compare", a, old, "--out", tmp_path / "o"), 2)
    lines = (b / "pairs.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["strict"] = "yes"
    (old / "pairs.jsonl").write_text("\n".join([lines[0], json.dumps(bad), *lines[2:]]) + "\n")
    line = one_error_line(finer("compare", a, old, "--out", tmp_path / "o"), 2)
    assert "pairs.jsonl" in line and "line 2" in line and "'strict'" in line and "true or false" in line
    (old / "pairs.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert "do not match report.json" in one_error_line(finer("compare", a, old, "--out", tmp_path / "o"), 2)
    (old / "pairs.jsonl").write_text("\n".join([lines[0], lines[0], *lines[2:]]) + "\n")
    assert "pair id repeated" in one_error_line(finer("compare", a, old, "--out", tmp_path / "o"), 2)
    official = tmp_path / "official"
    shutil.copytree(b, official)
    report = json.loads((official / "report.json").read_text())
    report["parser"] = "official"
    (official / "report.json").write_text(json.dumps(report))
    assert "--parser" in one_error_line(finer("compare", a, official, "--out", tmp_path / "o"), 2)
    assert finer("compare", a, official, "--parser", "official", "--out", tmp_path / "o").returncode == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == FILES
