"""Model endpoints that fail: a build aborts before any shard with exit 5 and the endpoint named,
within a bounded time; unusable answers past --max-skip-rate are exit 7; paid answers are kept."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faultkit import leftovers, tree
from finer_datasets import get_builder
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer


class StatusServer:
    """Answers every request (GET and POST) with one status; counts them."""

    def __init__(self, status: int, body: bytes = b'{"error": "no"}'):
        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                outer.requests += 1
                try:
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: fine
                    pass

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def previous(tmp_path, finer):
    """A good previous build that a failing --overwrite build must leave alone."""
    out = tmp_path / "out"
    assert finer("build", "compre_cap", "--sample", "--out", out, "--no-progress").code == 0
    return out


def llm_build(finer, out, url, *extra):
    return finer("build", "compre_cap", "--sample", "--out", out, "--overwrite", "--no-progress",
                 "--llm-base-url", url, "--llm-model", "scripted", *extra)


@pytest.mark.parametrize("status,words", [(401, "unauthorised"), (403, "unauthorised"), (404, "not found")])
def test_unauthorised_or_missing_endpoints_abort_with_exit_5(status, words, previous, finer, tmp_path):
    before = tree(previous)
    with StatusServer(status) as server:
        started = time.monotonic()
        llm_build(finer, previous, server.url).clean_failure(5, server.url.split("/v1")[0], words)
    assert time.monotonic() - started < 10 and server.requests <= 1 + 8  # the check, then at most one request per slot
    assert tree(previous) == before and leftovers(tmp_path) == []


def test_an_unknown_model_aborts_before_any_request(previous, finer, tmp_path):
    before = tree(previous)
    with ScriptedServer(models=("qwen3-14b",)) as server:
        llm_build(finer, previous, server.url).clean_failure(5, "'scripted' is not served", "qwen3-14b")
        assert server.requests == 0  # only the GET /models check
    assert tree(previous) == before


def test_connection_refused_aborts_quickly(previous, finer, tmp_path):
    url = closed_port_url()
    started = time.monotonic()
    llm_build(finer, previous, url).clean_failure(5, url, "cannot reach")
    assert time.monotonic() - started < 10


def test_a_server_answering_500_to_everything_trips_the_circuit_breaker(previous, finer, tmp_path):
    before = tree(previous)
    with ScriptedServer(hook=lambda body, n: (500, b'{"error": "overloaded"}')) as server:
        started = time.monotonic()
        run = llm_build(finer, previous, server.url, "--llm-max-retries", "2", "--llm-concurrency", "4")
        elapsed = time.monotonic() - started
    run.clean_failure(5, "circuit breaker open", "HTTP 500")
    assert elapsed < 30 and server.requests < 40, (elapsed, server.requests)
    assert tree(previous) == before and leftovers(tmp_path) == []


def test_a_server_that_never_answers_in_time_trips_the_breaker(previous, finer):
    def slow(body, n):
        time.sleep(1.0)
        return None

    with ScriptedServer(hook=slow) as server:
        started = time.monotonic()
        run = llm_build(finer, previous, server.url, "--llm-timeout", "0.2", "--llm-max-retries", "1",
                        "--llm-breaker-seconds", "3")
    run.clean_failure(5, "circuit breaker open")
    assert time.monotonic() - started < 30


USELESS = json.dumps({"choices": [{"message": {"content": "I cannot help with that."}}]}).encode()


def test_unusable_answers_for_every_element_fail_with_exit_7(previous, finer, tmp_path):
    before = tree(previous)
    with ScriptedServer(hook=lambda body, n: (200, USELESS)) as server:  # valid HTTP, useless content
        run = llm_build(finer, previous, server.url, "--llm-stages", "negatives")
    run.clean_failure(7, "produced no records", "skipped")
    assert tree(previous) == before and leftovers(tmp_path) == []


def test_unusable_answers_beyond_the_skip_rate_fail_with_exit_7(previous, finer, tmp_path):
    before = tree(previous)

    def half(body, n):  # the same elements always get a useless answer, re-asks included
        first = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return (200, USELESS) if hash(first) % 2 else None

    with ScriptedServer(hook=half) as server:
        run = llm_build(finer, previous, server.url, "--llm-stages", "negatives")
    run.clean_failure(7, "skipped for defects", "no_negatives", "--max-skip-rate 0.25")
    assert tree(previous) == before and leftovers(tmp_path) == []
    with ScriptedServer(hook=half) as server:  # a looser limit accepts the same answers
        assert llm_build(finer, previous, server.url, "--llm-stages", "negatives", "--max-skip-rate", "0.9").code == 0


def test_answers_paid_before_an_outage_are_not_asked_again(tmp_path, finer):
    out, transcript = tmp_path / "o", tmp_path / "t.sqlite"
    budget = {"left": 60}
    handlers = get_builder("compre_cap").scripted_handlers()

    def outage(body, n):
        if budget["left"] <= 0:
            return 503, b'{"error": "down"}'
        budget["left"] -= 1
        return None

    with ScriptedServer(ScriptedLLM(handlers=handlers), hook=outage) as server:
        run = finer("build", "compre_cap", "--sample", "--out", out, "--no-progress", "--llm-base-url", server.url,
                    "--llm-model", "scripted", "--transcript", transcript, "--llm-max-retries", "1",
                    "--llm-concurrency", "4")
        run.clean_failure(5, "circuit breaker open")
        paid = dict(server.answered)
        assert 0 < sum(paid.values()) <= 60 and not out.exists()
        budget["left"] = 10**6  # the endpoint is back
        assert finer("build", "compre_cap", "--sample", "--out", out, "--no-progress", "--llm-base-url", server.url,
                     "--llm-model", "scripted", "--transcript", transcript).code == 0
    assert all(server.answered[key] == 1 for key in paid), "a paid answer was asked for again"
