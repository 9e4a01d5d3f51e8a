"""Data-parallel scoring (baselines/score.py under RANK/WORLD_SIZE): whole images per rank, one
predictions file per rank, the last rank merges, a resume with another W asks nothing twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from test_docs_commands import _script, blocks

from finer_datasets.errors import PredictionsError, UsageError
from finer_datasets.eval.ranks import Ranks, answered, merge_predictions, question_order, shard_of
from finer_datasets.testing.scripted import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]
SCORE = ROOT / "baselines" / "score.py"
sys.path.insert(0, str(ROOT / "baselines"))
import score as score_script  # noqa: E402

LIMIT = 3  # pairs per setting: 24 questions


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def question_images(dataset: Path) -> dict[str, str]:
    """{question id: image id} of a built benchmark."""
    from finer_datasets.core.reader import iter_records
    from finer_datasets.hub.resolve import resolve_dataset
    from finer_datasets.mcq.records import pair_rows

    built = resolve_dataset(str(dataset))
    return {pair[p]["question_id"]: pair["image_id"] for record in iter_records(built.folder, built.manifest)
            for pair in pair_rows(record) for p in ("positive", "negative")}


# -- ranks, split, files --------------------------------------------------------------------------

def test_ranks_come_from_the_launcher_environment():
    assert Ranks.from_env({}) == Ranks(0, 1, None) and not Ranks.from_env({}).parallel
    ranks = Ranks.from_env({"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1"})
    assert (ranks.rank, ranks.world, ranks.local_rank, ranks.parallel) == (1, 3, 1, True)
    assert ranks.file_name == "predictions.rank1-of3.jsonl" and Ranks().file_name == "predictions.jsonl"
    assert Ranks.from_env({"RANK": "0", "WORLD_SIZE": "1"}).file_name == "predictions.jsonl"


@pytest.mark.parametrize("env, message", [
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 with WORLD_SIZE=2: the rank must be 0 to WORLD_SIZE-1"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "RANK=0 with WORLD_SIZE=0"),
    ({"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one' is not an integer"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK='-1' must be 0 or more"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not"),
    ({"RANK": "1"}, "RANK is set but WORLD_SIZE is not"),
])
def test_bad_launcher_variables_are_one_line_errors(env, message, monkeypatch, capsys):
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Ranks.from_env(env)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert score_script.cli(["out/x", "--model", "m", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_the_split_is_a_stable_hash_of_the_image():
    assert [shard_of(key, 4) for key in ("sa_1", "sa_5", "img-a", "docci_0001")] == [2, 3, 1, 2]  # never changes
    counts = Counter(shard_of(f"image-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and max(counts.values()) < 1.1 * min(counts.values())


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    import torch

    from finer_datasets.eval.ranks import rank_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [rank_device(None, 1), rank_device("cuda", 5), rank_device("cpu", 1), rank_device("cuda:3", 0)] == [
        "cuda:1", "cuda:1", "cpu", "cuda:3"]
    assert rank_device(None, None) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device(None, 1) is None  # no GPU: the engine's default (the CPU)


def test_question_order_is_the_order_one_process_asks(sample_build):
    from finer_datasets.core.reader import iter_records, iter_samples
    from finer_datasets.eval.prompts import get_prompt
    from finer_datasets.eval.questions import image_questions, select_pairs

    pairs = select_pairs(iter_records(sample_build.out, sample_build.manifest))
    asked = image_questions(iter_samples(sample_build.out, sample_build.manifest), pairs, get_prompt("official"))
    assert question_order(pairs) == [q.question_id for q in asked]


def answer(qid: str, response: str = "A") -> str:
    return json.dumps({"question_id": qid, "response": response})


def test_answers_of_every_file_and_the_merge(tmp_path, caplog):
    (tmp_path / "predictions.jsonl").write_text(answer("q1") + "\n" + answer("q2")[:9])  # a kill cut line 2
    (tmp_path / "predictions.rank0-of2.jsonl").write_text(answer("q3") + "\n" + answer("q1", "B") + "\n")
    (tmp_path / "predictions.rank1-of3.jsonl").write_text(answer("q2") + "\n")
    for name in ("predictions.rank3-of2.jsonl", "predictions.rank01-of2.jsonl"):
        (tmp_path / name).write_text("not a rank file of ours\n")
    found = answered(tmp_path)
    assert list(found) == ["q1", "q3", "q2"] and json.loads(found["q1"])["response"] == "A"  # first file wins
    assert "1 question(s)" in caplog.text and "different answers" in caplog.text
    assert merge_predictions(tmp_path, found, ["q2", "q9", "q3"]) == 2
    assert (tmp_path / "predictions.jsonl").read_text().splitlines() == [answer("q1"), answer("q2"), answer("q3")]
    before = (tmp_path / "predictions.jsonl").stat().st_mtime_ns
    assert merge_predictions(tmp_path, answered(tmp_path), ["q1", "q2", "q3"]) == 0  # nothing new: not rewritten
    assert (tmp_path / "predictions.jsonl").stat().st_mtime_ns == before


@pytest.mark.parametrize("content, message", [
    ("{\"question_id\": \"q1\"}\n", "missing key 'response'"),
    ("[1]\n", "expected a JSON object"),
    ("{oops\n", "not valid JSON"),
    (b"\xff\n", "not UTF-8 text at byte offset 1"),
])
def test_a_bad_line_in_a_rank_file_names_the_file_and_the_line(tmp_path, content, message):
    path = tmp_path / "predictions.rank1-of2.jsonl"
    path.write_bytes(b"\n" + (content if isinstance(content, bytes) else content.encode()))
    with pytest.raises(PredictionsError, match=re.escape(f"file {path}, line 2: {message}")):
        answered(tmp_path)


def test_a_corrupt_rank_file_stops_the_run_in_one_line(sample_build, tmp_path, capsys):
    (tmp_path / "predictions.rank1-of2.jsonl").write_text(answer("q1") + "\n{oops\n")
    code = score_script.cli([str(sample_build.out), "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1",
                             "--model", "scripted-vl", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == f"error: file {tmp_path / 'predictions.rank1-of2.jsonl'}, line 2: not valid JSON (Expecting " \
                  "property name enclosed in double quotes)\n"


# -- two processes give what one gives (the documented commands, run as written) ----------------------

@pytest.mark.slow
def test_the_several_gpus_commands_give_what_one_process_gives(tmp_path):
    text = (ROOT / "docs" / "evaluation.md").read_text("utf-8")
    section = text[text.index("## Several GPUs"):]
    section = section[:section.index("\n## ", 1)]
    found = blocks(section)
    assert [reason is None for _, _, reason in found] == [False, True]
    build = blocks(text)[0]
    assert build[1] == "finer build compre_cap --sample --out out/compre_cap"
    (tmp_path / "baselines").symlink_to(ROOT / "baselines")
    bin_dir = Path(sys.executable).parent
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for lang, code, _ in (build, found[1]):
        run = subprocess.run(["bash", str(_script(lang, code, tmp_path))], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, f"block failed:\n{code}\n--- stderr ---\n{run.stderr[-4000:]}"
    assert "rank 0 of 2:" in run.stderr and "rank 1 of 2:" in run.stderr
    one = tmp_path / "runs" / "one"
    score_script.main(score_script.parse_args([str(tmp_path / "out" / "compre_cap"), "--model", str(tmp_path / "tiny-vlm"),
                                               "--engine", "letters", "--device", "cpu", "--out", str(one)]))
    reference = (one / "predictions.jsonl").read_bytes()
    image_of = question_images(tmp_path / "out" / "compre_cap")
    for name in ("tiny-torchrun", "tiny-by-hand"):
        run_dir = tmp_path / "runs" / name
        assert (run_dir / "predictions.jsonl").read_bytes() == reference, name
        shares = [lines(run_dir / f"predictions.rank{r}-of2.jsonl") for r in (0, 1)]
        assert sum(map(len, shares)) == len(reference.splitlines()) and all(shares)  # each rank asked its own
        images = [{image_of[a["question_id"]] for a in share} for share in shares]
        assert not images[0] & images[1]  # whole images per rank
        report, single = (json.loads((d / "report.json").read_text()) for d in (run_dir, one))
        assert report["settings"] == single["settings"] and report["overall"] == single["overall"]


# -- a resume with another W asks nothing twice ----------------------------------------------------------

def served_cmd(server: ScriptedServer, build, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCORE), str(build.out), "--engine", "openai", "--base-url", server.url, "--model",
            "scripted-vl", "--limit", str(LIMIT), "--out", str(out), "--bootstrap", "0", *extra]


def launch(cmd: list[str], rank: int, world: int) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=clean_env(RANK=str(rank), WORLD_SIZE=str(world)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_resume_with_three_ranks_after_a_broken_two_rank_run_asks_nothing_twice(sample_build, tmp_path):
    out = tmp_path / "run"
    refuse_after = []  # the server turns the client away (401) after this many answers

    def hook(body, n):
        if refuse_after and n > refuse_after[0]:
            return 401, b'{"error": {"message": "invalid api key"}}'
        return None

    with ScriptedServer(hook=hook) as server:
        first = launch(served_cmd(server, sample_build, out), 0, 2)
        _, stderr = first.communicate(timeout=120)
        assert first.returncode == 0, stderr
        assert "rank 0 of 2: its share is answered" in stderr and not (out / "report.json").exists()
        share0 = lines(out / "predictions.rank0-of2.jsonl")
        refuse_after.append(server.requests + 3)  # rank 1 gets 3 answers, then the key is refused
        second = launch(served_cmd(server, sample_build, out, "--concurrency", "1"), 1, 2)
        _, stderr = second.communicate(timeout=120)
        assert second.returncode == 5
        assert [line for line in stderr.splitlines() if line.startswith("error:")] == stderr.splitlines()[-1:]
        rank1 = out / "predictions.rank1-of2.jsonl"
        kept = rank1.read_text().splitlines()
        assert len(kept) == 3
        rank1.write_text("\n".join(kept[:2]) + "\n" + kept[2][:25])  # and a kill cut its last line
        asked_before = dict(server.answered)
        for leftover in out.glob("transcript.sqlite*"):  # so that every question asked again reaches the server
            leftover.unlink()
        refuse_after.clear()
        requests_before = server.requests
        procs = [launch(served_cmd(server, sample_build, out), r, 3) for r in range(3)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        asked_again = server.requests - requests_before
        answered_twice = [key for key, count in server.answered.items() if count > 1]
    assert [code for code, _ in results] == [0, 0, 0], [err[-2000:] for _, err in results]
    total = 4 * LIMIT * 2
    assert asked_again == total - len(share0) - 2  # the cut line's question is asked again, nothing else
    assert len(answered_twice) == 1 and answered_twice[0] in asked_before
    to_go = sum(int(err.split(" already answered, ")[1].split(" to go")[0]) for _, err in results)
    assert to_go == asked_again
    image_of = question_images(sample_build.out)
    for rank in range(3):  # whole images, each on the rank its id hashes to (a rank with nothing to ask: no file)
        path = out / f"predictions.rank{rank}-of3.jsonl"
        assert {shard_of(image_of[a["question_id"]], 3) for a in (lines(path) if path.exists() else [])} <= {rank}
    merged = lines(out / "predictions.jsonl")
    assert len(merged) == len({a["question_id"] for a in merged}) == total
    assert (out / "report.json").is_file() and json.loads((out / "report.json").read_text())["n_pairs"] == 4 * LIMIT
    # one process on the finished folder asks nothing and changes no answer
    before = (out / "predictions.jsonl").read_bytes()
    with ScriptedServer() as again:
        score_script.main(score_script.parse_args(served_cmd(again, sample_build, out)[2:]))
        assert again.requests == 0
    assert (out / "predictions.jsonl").read_bytes() == before


def test_a_second_process_of_the_same_rank_waits_for_the_first(sample_build, tmp_path):
    from finer_datasets.eval.ranks import writer_lock

    out = tmp_path / "run"
    out.mkdir()
    with ScriptedServer() as server:
        with writer_lock(out / "predictions.rank1-of2.jsonl"):  # the first process of rank 1, still at work
            late = launch(served_cmd(server, sample_build, out), 1, 2)
            for line in late.stderr:
                if "waiting for its lock" in line:
                    break
            assert late.poll() is None and server.requests == 0 and not (out / "predictions.rank1-of2.jsonl").exists()
        _, stderr = late.communicate(timeout=120)
    assert late.returncode == 0 and "rank 1 of 2: its share is answered" in stderr
    assert server.requests == len((out / "predictions.rank1-of2.jsonl").read_text().splitlines()) > 0
