"""LLM/MLLM stages against a real HTTP server on 127.0.0.1 (the scripted model) with fault injection."""

import asyncio
import json
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from finer_datasets import LLMError, TranscriptMissError, get_builder
from finer_datasets.cli import main
from finer_datasets.core.reader import iter_records
from finer_datasets.llm import (
    LIBRARY_PROMPTS,
    ChatClient,
    LLMConfig,
    PromptSet,
    TranscriptStore,
    entropy,
    json_parser,
    request_key,
)
from finer_datasets.llm.entropy import _logprob_parser
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer, _digest

render = PromptSet(LIBRARY_PROMPTS).render


def compre_cap_server(**kw):
    """The scripted model answering CompreCap's own prompts too (its builder's handlers)."""
    return ScriptedServer(ScriptedLLM(handlers=get_builder("compre_cap").scripted_handlers()), **kw)

SCHEMA = {"type": "object", "required": ["negatives"],
          "properties": {"negatives": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "string"}}}}
MESSAGES = render("negatives.object", positive="cat", present=["cat", "desk"])


def client(server, store, **kw):
    config = LLMConfig(base_url=server.url, model="scripted", timeout=kw.pop("timeout", 5.0), backoff=0.01, **kw)
    return ChatClient(config, store)


def faults(*plan):
    """A hook answering the first len(plan) requests with the given faults, in order."""

    def hook(body, n):
        if n > len(plan):
            return None
        kind = plan[n - 1]
        if kind in (429, 500, 503):
            return kind, b'{"error": "try later"}'
        if kind == "timeout":
            time.sleep(0.6)
            return 500, b"{}"
        if kind == "truncated":
            return 200, b'{"id": "x", "choices": [{"message": {"content": "{\\"negatives\\": ['
        content = "Sure! Here are some negatives: dog, fox" if kind == "nonjson" else json.dumps({"negs": ["a"]})
        return 200, json.dumps({"choices": [{"message": {"content": content}}]}).encode()

    return hook


def test_retries_and_reasks_then_a_valid_answer(tmp_path):
    plan = (429, 500, "timeout", "truncated", "nonjson", "wrongshape")
    with ScriptedServer(hook=faults(*plan)) as server:
        c = client(server, TranscriptStore(tmp_path / "t.sqlite"), timeout=0.3)
        answer = c.run(c.ask(MESSAGES, json_parser(SCHEMA), purpose="test"))
    assert len(answer["negatives"]) == 4 and "cat" not in answer["negatives"]
    assert c.live["retries"] == 4 and c.live["reasks"] == 2
    assert server.requests == len(plan) + 1


def test_gives_up_after_bounded_retries_and_reasks(tmp_path):
    with ScriptedServer(hook=faults(*[503] * 10)) as server:
        c = client(server, TranscriptStore(tmp_path / "t.sqlite"), max_retries=2)
        with pytest.raises(LLMError, match="giving up after 3 attempts"):
            c.run(c.ask(MESSAGES, json_parser(SCHEMA)))
    with ScriptedServer(hook=faults(*["wrongshape"] * 10)) as server:
        c = client(server, TranscriptStore(tmp_path / "u.sqlite"), max_reasks=1)
        with pytest.raises(LLMError, match="no usable answer after 1 re-ask"):
            c.run(c.ask(MESSAGES, json_parser(SCHEMA)))
        assert server.requests == 2
    with ScriptedServer(hook=faults(400)) as server:
        server.hook = lambda body, n: (400, b'{"error": "bad request"}')
        c = client(server, TranscriptStore(tmp_path / "v.sqlite"))
        with pytest.raises(LLMError, match="HTTP 400"):
            c.run(c.ask(MESSAGES, json_parser(SCHEMA)))
        assert server.requests == 1  # a client error is not retried


def test_transcript_answers_repeat_requests_and_survives_reopening(tmp_path):
    path = tmp_path / "t.sqlite"
    with ScriptedServer() as server:
        c = client(server, TranscriptStore(path))
        first = c.run(c.ask(MESSAGES, json_parser(SCHEMA)))
        again = c.run(c.ask(MESSAGES, json_parser(SCHEMA)))
        reopened = client(server, TranscriptStore(path))
        third = reopened.run(reopened.ask(MESSAGES, json_parser(SCHEMA)))
        assert server.requests == 1
    assert first == again == third
    assert c.usage_summary()["cache_hits"] == 1 and c.usage_summary()["unique_prompts"] == 1


def test_concurrent_identical_asks_send_one_request_and_concurrency_is_bounded(tmp_path):
    in_flight, peak, lock = [0], [0], threading.Lock()

    def hook(body, n):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return None

    with ScriptedServer(hook=hook) as server:
        c = client(server, TranscriptStore(tmp_path / "t.sqlite"), concurrency=3)
        prompts = [render("negatives.object", positive=p, present=[p]) for p in
                   ["cat", "dog", "car", "tree", "cup", "lamp", "book", "box"]]

        async def many():
            return await asyncio.gather(*[c.ask(m, json_parser(SCHEMA)) for m in prompts + prompts])

        answers = c.run(many())
    assert answers[:8] == answers[8:]
    assert server.requests == 8 and 1 < peak[0] <= 3


def test_keys_change_with_prompt_model_and_parameters():
    base = request_key("openai-chat", "m", MESSAGES, {"temperature": 0})
    edited = [dict(MESSAGES[0]), {"role": "user", "content": MESSAGES[1]["content"] + " "}]
    assert request_key("openai-chat", "m", edited, {"temperature": 0}) != base
    assert request_key("openai-chat", "m2", MESSAGES, {"temperature": 0}) != base
    assert request_key("openai-chat", "m", MESSAGES, {"temperature": 0.7}) != base
    assert request_key("openai-chat", "m", json.loads(json.dumps(MESSAGES)), {"temperature": 0}) == base


def test_replay_never_calls_a_model_and_fails_clearly_on_a_miss(tmp_path):
    path = tmp_path / "t.sqlite"
    with ScriptedServer() as server:
        c = client(server, TranscriptStore(path))
        recorded = c.run(c.ask(MESSAGES, json_parser(SCHEMA)))
    replay = ChatClient(LLMConfig(base_url="http://127.0.0.1:9/v1", model="scripted", api_key_env=""),
                        TranscriptStore(path, replay=True))
    assert replay.run(replay.ask(MESSAGES, json_parser(SCHEMA))) == recorded
    other = render("negatives.object", positive="dog", present=["dog"])
    with pytest.raises(TranscriptMissError, match="--replay: no answer"):
        replay.run(replay.ask(other, json_parser(SCHEMA), purpose="dog negatives"))


def test_api_key_is_sent_but_never_logged_or_stored(tmp_path, monkeypatch, caplog):
    secret = "sk-test-SECRET-123"
    monkeypatch.setenv("FINER_TEST_KEY", secret)
    seen = []
    with ScriptedServer() as server:
        original = server._server.RequestHandlerClass.do_POST

        def spy(handler):
            seen.append(handler.headers.get("Authorization"))
            return original(handler)

        server._server.RequestHandlerClass.do_POST = spy
        caplog.set_level(logging.DEBUG)
        c = client(server, TranscriptStore(tmp_path / "t.sqlite"), api_key_env="FINER_TEST_KEY")
        c.run(c.ask(MESSAGES, json_parser(SCHEMA)))
        c.store.export(c.used, tmp_path / "t.jsonl")
    assert seen == [f"Bearer {secret}"]
    assert secret not in caplog.text
    assert secret.encode() not in (tmp_path / "t.sqlite").read_bytes()
    assert secret not in (tmp_path / "t.jsonl").read_text()


def test_concurrent_writers_share_one_transcript(tmp_path):
    path = tmp_path / "shared.sqlite"

    errors = []

    def writer(i):
        try:
            store = TranscriptStore(path)
            for j in range(50):
                store.put(f"k{i}-{j}", {"i": i}, {"j": j}, {"prompt_tokens": 1})
                store.put(f"shared-{j}", {"j": j}, {"j": j}, {})  # the same key from every writer
            store.close()
        except Exception as exc:  # surfaced below: a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(TranscriptStore(path)) == 6 * 50 + 50


def test_entropy_and_logprob_parsing():
    assert entropy([1, 0, 0, 0, 0]) == 0
    assert math.isclose(entropy([0.2] * 5), math.log(5))
    top = [{"token": t, "logprob": math.log(p)} for t, p in zip("ABCDE", [0.7, 0.1, 0.1, 0.05, 0.05])]
    probs, problem = _logprob_parser({"choices": [{"logprobs": {"content": [{"token": "A", "logprob": math.log(0.7),
                                                                               "top_logprobs": top}]}}]})
    assert problem is None and math.isclose(sum(probs), 1) and max(probs) == probs[0]
    assert _logprob_parser({"choices": [{"message": {"content": "A"}}]})[1] is not None


# --- whole builds ----------------------------------------------------------------------------

def llm_args(server, out, *extra):
    return ["build", "compre_cap", "--sample", "--out", str(out), "--no-progress", "--llm-base-url", server.url,
            "--llm-model", "scripted", "--mllm-base-url", server.url, "--mllm-model", "scripted-vl", *extra]


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    with compre_cap_server() as server:
        assert main(llm_args(server, root / "out")) == 0
    return root / "out"


def test_llm_build_records_transcript_usage_and_filter_stats(recorded):
    manifest = json.loads((recorded / "manifest.json").read_text())
    llm = manifest["llm"]
    assert llm["model"] == "scripted" and llm["stages"] == ["negatives", "rewrite", "wh"]
    assert llm["usage"]["unique_prompts"] == llm["transcript"]["entries"] - 1  # + the config entry
    assert llm["usage"]["prompt_tokens"] > 0 and llm["usage"]["cache_hits"] >= 0
    levels = llm["entropy_filter"]["levels"]
    assert {k: v["theta"] for k, v in levels.items()} == {"object": 0.8, "attribute": 0.8, "relation": 0.4}
    assert sum(v["regenerated"] for v in levels.values()) > 0
    card = (recorded / "README.md").read_text()
    assert "Entropy filter" in card and "`transcript.jsonl`" in card and "scripted-vl" in card
    graphs = [r["scene_graph"] for r in iter_records(recorded, manifest)]
    assert all(len(o["negatives"]) in (0, 4) for g in graphs for o in g["objects"])
    assert manifest["counts"]["skips"].keys() <= {"too_few_objects", "wh_no_context_attribute"}


def test_replayed_build_is_byte_identical(recorded, tmp_path):
    assert main(["build", "compre_cap", "--sample", "--out", str(tmp_path / "replay"), "--no-progress",
                 "--replay", str(recorded / "transcript.jsonl")]) == 0
    assert files(tmp_path / "replay") == files(recorded)


def test_replay_miss_fails_with_no_output(recorded, tmp_path, capsys):
    lines = (recorded / "transcript.jsonl").read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(line for line in lines if '"key":"config"' in line or lines.index(line) % 7) + "\n")
    code = main(["build", "compre_cap", "--sample", "--out", str(tmp_path / "o"), "--no-progress", "--replay", str(broken)])
    assert code == 5 and "--replay: no answer" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bundled_sample_transcript_replays_offline(tmp_path):
    assert main(["build", "compre_cap", "--sample", "--replay", "sample", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["llm"]["model"] == "scripted" and manifest["llm"]["entropy_filter"] is not None


def test_sigkill_midway_then_rerun_is_identical_and_pays_nothing_twice(tmp_path, recorded):
    server = compre_cap_server(delay=0.02)
    out, transcript = tmp_path / "killed", tmp_path / "killed.sqlite"
    cmd = [sys.executable, "-m", "finer_datasets.cli", *llm_args(server, out, "--transcript", str(transcript),
                                                                  "--llm-concurrency", "4")]
    with server:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while sum(server.answered.values()) < 150 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out.exists()
        paid = sum(server.answered.values())
        db = sqlite3.connect(transcript)
        stored = [json.loads(row[0])["messages"] for row in db.execute("SELECT request FROM answers WHERE key != 'config'")]
        db.close()
        assert stored
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    # every answer that had reached the transcript before the kill is never asked for again ...
    text_prompts = [m for m in stored if all(isinstance(x["content"], str) for x in m)]
    assert text_prompts and all(server.answered[_digest(m)] == 1 for m in text_prompts)
    # ... and at most the requests in flight at the kill (concurrency 4) were answered twice
    assert sum(n - 1 for n in server.answered.values()) <= 4
    assert sum(server.answered.values()) > paid
    assert files(out) == files(recorded)
