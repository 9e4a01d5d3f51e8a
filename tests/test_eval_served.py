"""The openai engine of baselines/score.py against the local scripted server: logprobs, text, faults,
bounded concurrency, resume, and run.json refusing to mix runs."""

import json
import sys
from pathlib import Path

import pytest

from finer_datasets.errors import LLMError, OutputError
from finer_datasets.eval.served import ServedModel, letter_distribution
from finer_datasets.testing.scripted import ScriptedServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "baselines"))
import score as score_script  # noqa: E402

LIMIT = 2  # pairs per setting: 16 questions


def args_for(server, sample_build, out, *extra):
    return score_script.parse_args([str(sample_build.out), "--engine", "openai", "--base-url", server.url,
                                    "--model", "scripted-vl", "--limit", str(LIMIT), "--out", str(out),
                                    "--bootstrap", "0", *extra])


def served(server, out, **config):
    """A client with test-sized backoff (the script's defaults wait seconds)."""
    return ServedModel.connect(server.url, "scripted-vl", transcript=out / "transcript.sqlite", max_new_tokens=2,
                               backoff=0.01, max_backoff=0.02, **config)


def predictions(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def text_of(body):
    return next(c["text"] for c in body["messages"][0]["content"] if c.get("type") == "text")


def completion(text):
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()


def test_logprobs_give_letter_distributions(sample_build, tmp_path):
    with ScriptedServer() as server:
        result = score_script.main(args_for(server, sample_build, tmp_path))
        asked = server.requests
    lines = predictions(tmp_path)
    assert len(lines) == len({a["question_id"] for a in lines}) == 4 * LIMIT * 2
    for answer in lines:
        assert answer["response"] in "ABCDE" and len(answer["probs"]) == 5
        assert abs(sum(answer["probs"]) - 1) < 1e-4
        assert answer["response"] == "ABCDE"[max(range(5), key=answer["probs"].__getitem__)]
    assert result["n_pairs"] == 4 * LIMIT and result["engine"] == "openai"
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["engine"], run["model"], run["endpoint"], run["prompt"], run["max_new_tokens"]) == (
        "openai", "scripted-vl", server.url, "official", 2)
    assert run["dataset"]["manifest_digest"] == sample_build.manifest["digest"]
    # a rerun asks nothing: every question is answered already
    with ScriptedServer() as again:
        score_script.main(args_for(again, sample_build, tmp_path))
        assert again.requests == 0
    assert asked == 4 * LIMIT * 2


def test_requests_carry_the_official_prompt_and_the_image(sample_build, tmp_path):
    seen = []

    def record(body, n):
        seen.append(body)

    with ScriptedServer(hook=record) as server:
        score_script.main(args_for(server, sample_build, tmp_path))
    body = seen[0]
    assert body["max_tokens"] == 2 and body["temperature"] == 0.0 and body["logprobs"] is True
    image, text = body["messages"][0]["content"]
    assert image["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")  # the original JPEG bytes
    assert text["text"].startswith("Select the best answer for the multiple-choice question.\n\n")
    assert text["text"].endswith("\n\nPlease answer with a single capital letter (A, B, C, D, or E):")


def test_text_answers_without_logprobs(sample_build, tmp_path):
    def answer(body, n):
        assert "logprobs" not in body
        return 200, completion("(B")

    with ScriptedServer(hook=answer) as server:
        score_script.main(args_for(server, sample_build, tmp_path, "--no-logprobs"))
    lines = predictions(tmp_path)
    assert {a["response"] for a in lines} == {"(B"} and not any("probs" in a for a in lines)


def test_a_server_refusing_logprobs_is_asked_for_text(sample_build, tmp_path):
    def refuse(body, n):
        if body.get("logprobs"):
            return 400, b'{"error": {"message": "logprobs is not supported by this model"}}'
        return 200, completion("C")

    with ScriptedServer(hook=refuse) as server:
        model = served(server, tmp_path)
        score_script.main(args_for(server, sample_build, tmp_path), vlm=model)
    assert model.logprobs is False
    assert {a["response"] for a in predictions(tmp_path)} == {"C"}


def test_transient_faults_are_retried(sample_build, tmp_path):
    attempts = {}

    def flaky(body, n):  # every request fails twice (an overloaded server, then a body cut off), then works
        key = json.dumps(body["messages"])
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] == 1:
            return 503, b"busy"
        if attempts[key] == 2:
            return 200, b'{"choices": [{"message": {"content": "A'
        return None

    with ScriptedServer(hook=flaky) as server:
        score_script.main(args_for(server, sample_build, tmp_path), vlm=served(server, tmp_path))
        assert server.requests == 3 * 16
    assert len(predictions(tmp_path)) == 16


def test_concurrency_is_bounded(sample_build, tmp_path):
    with ScriptedServer(delay=0.05) as server:
        score_script.main(args_for(server, sample_build, tmp_path), vlm=served(server, tmp_path, concurrency=3))
        assert 1 < server.peak_in_flight <= 3


def test_a_question_the_server_refuses_is_left_for_a_rerun(sample_build, tmp_path, capsys):
    victim = {}

    def refuse_one(body, n):
        text = text_of(body)
        victim.setdefault("text", text)
        if text == victim["text"]:
            return 400, b'{"error": "prompt rejected by the content filter"}'
        return None

    with ScriptedServer(hook=refuse_one) as server:
        args = args_for(server, sample_build, tmp_path)
        with pytest.raises(LLMError, match="1 question.s. got no answer.*run the same command again"):
            score_script.main(args, vlm=served(server, tmp_path))
    assert len(predictions(tmp_path)) == 15  # every other answer is kept
    assert not (tmp_path / "report.json").exists()
    with ScriptedServer() as server:
        assert score_script.cli([*map(str, ["--base-url", server.url]), *sys_args(sample_build, tmp_path)]) == 0
        assert server.requests == 1  # only the missing question is asked again
    assert len(predictions(tmp_path)) == 16 and (tmp_path / "report.json").is_file()


def error_lines(err):
    """The ``error: ...`` lines of stderr (progress bars and log lines aside)."""
    return [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]


def sys_args(sample_build, out):
    return [str(sample_build.out), "--engine", "openai", "--model", "scripted-vl", "--limit", str(LIMIT), "--out",
            str(out), "--bootstrap", "0"]


@pytest.mark.parametrize("status", [401, 404])
def test_a_dead_endpoint_stops_the_run_with_exit_5(sample_build, tmp_path, capsys, status):
    def deny(body, n):
        return (status, b'{"error": "model not found"}') if n > 4 else None

    with ScriptedServer(hook=deny) as server:
        code = score_script.cli(["--base-url", server.url, *sys_args(sample_build, tmp_path)])
    err = capsys.readouterr().err
    assert code == 5 and len(error_lines(err)) == 1 and "Traceback" not in err
    assert f"HTTP {status}" in error_lines(err)[0]
    assert 0 < len(predictions(tmp_path)) < 16  # what came before the failure is kept


def test_unknown_model_and_unreachable_server(sample_build, tmp_path, capsys):
    with ScriptedServer() as server:
        code = score_script.cli(["--base-url", server.url, *sys_args(sample_build, tmp_path / "a"), "--model", "nope"])
    assert code == 5 and "'nope' is not served" in capsys.readouterr().err
    code = score_script.cli(["--base-url", "http://127.0.0.1:9/v1", *sys_args(sample_build, tmp_path / "b")])
    assert code == 5 and "cannot reach" in capsys.readouterr().err


@pytest.mark.parametrize("change", [["--model", "scripted"], ["--prompt", "appendix-d"], ["--engine", "letters"],
                                    ["--max-new-tokens", "5"]])
def test_resuming_with_another_configuration_is_refused(sample_build, tmp_path, capsys, change):
    with ScriptedServer() as server:
        score_script.main(args_for(server, sample_build, tmp_path))
        before = (tmp_path / "predictions.jsonl").read_bytes()
        with pytest.raises(OutputError, match="another configuration"):
            score_script.main(args_for(server, sample_build, tmp_path, *change))
        assert score_script.cli(["--base-url", server.url, *sys_args(sample_build, tmp_path), *change]) == 6
        assert server.requests == 16  # nothing was asked for the refused runs
    assert "resuming would mix answers" in capsys.readouterr().err
    assert (tmp_path / "predictions.jsonl").read_bytes() == before


def test_answers_without_a_run_record_are_refused(sample_build, tmp_path):
    (tmp_path / "predictions.jsonl").write_text('{"question_id": "x", "response": "A"}\n')
    with ScriptedServer() as server, pytest.raises(OutputError, match="no run.json"):
        score_script.main(args_for(server, sample_build, tmp_path))


def test_letter_distribution_reads_the_first_token():
    logprobs = {"content": [{"token": " B", "logprob": -0.1, "top_logprobs": [
        {"token": " B", "logprob": -0.1}, {"token": "(A", "logprob": -3.0}, {"token": "The", "logprob": -1.0}]}]}
    probs = letter_distribution(logprobs)
    assert probs[2:] == [0.0, 0.0, 0.0] and probs[1] > 0.9 and abs(sum(probs) - 1) < 1e-9
    assert letter_distribution({"content": [{"token": "The", "logprob": 0, "top_logprobs": []}]}) is None
    assert letter_distribution(None) is None
