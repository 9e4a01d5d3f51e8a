"""A scripted, deterministic stand-in for an OpenAI-compatible model, and a server for it.

``ScriptedLLM`` answers the library's generic prompts by rules (the offline lexical generator for
negatives, templates for Wh questions), a builder's own prompts through the ``handlers`` it is
given (``DatasetBuilder.scripted_handlers()``; this module never imports a builder), and
discriminator questions with a reproducible pseudo-random letter distribution. It exists so that
the LLM path (HTTP client, transcript, replay, entropy filter) can be exercised end to end with
no model: the tests use it, and the sample's bundled transcript was recorded against it. It is
not a model and its negatives are no better than ``LexicalNegatives``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

from finer_datasets.constants import LETTERS
from finer_datasets.scene_graph.graph import (
    SceneGraph,
    SGAttribute,
    SGObject,
    SGRelation,
)
from finer_datasets.scene_graph.lexicon import strip_copula
from finer_datasets.scene_graph.negatives import LexicalNegatives

__all__ = ["ScriptedLLM", "ScriptedServer"]

_QUOTED = re.compile(r'"([^"]+)"')
#: a builder's answer rule: (prompt text, seeded rng) -> answer JSON, or None when not its prompt
Handler = Callable[[str, random.Random], "dict[str, Any] | None"]


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ScriptedLLM:
    """``respond(request_json) -> chat.completion JSON`` for FINER's prompt templates."""

    def __init__(self, model: str = "scripted", *, handlers: Sequence[Handler] = ()):
        self.model = model
        self.lexical = LexicalNegatives()
        self.handlers = tuple(handlers)

    def respond(self, request: dict[str, Any]) -> dict[str, Any]:
        messages = request["messages"]
        user = messages[-1] if messages[0]["role"] != "system" else next(m for m in messages if m["role"] == "user")
        text = user["content"] if isinstance(user["content"], str) else next(
            c["text"] for c in user["content"] if c.get("type") == "text")
        rng = random.Random(_digest(messages[:2]))
        if request.get("logprobs"):
            return self._completion(request, "", logprobs=self._letters(text))
        return self._completion(request, json.dumps(self._answer(text, rng)))

    def _answer(self, text: str, rng: random.Random) -> dict[str, Any]:
        for handler in self.handlers:
            answer = handler(text, rng)
            if answer is not None:
                return answer
        quoted = _QUOTED.findall(text)
        present = json.loads(re.search(r"in the same image: (\[.*?\])\.", text).group(1)) if "in the same image:" in text else []
        if "shows the object" in text:
            g = SceneGraph("x", "x", tuple(SGObject(f"o{i}", n) for i, n in enumerate([quoted[0], *present])))
            return {"negatives": list(self.lexical.negatives_for(g, rng)["o0"])}
        if "Give 4 negatives" in text and "attribute phrases" in text:
            objects = (SGObject("o0", "thing", tuple(SGAttribute(f"a{i}", t) for i, t in enumerate([quoted[0], *present]))),)
            return {"negatives": list(self.lexical.negatives_for(SceneGraph("x", "x", objects), rng)["a0"])}
        if "Give 4 negatives" in text:
            positive = quoted[1]  # the first quote is the whole statement
            objects = (SGObject("o0", "a"), SGObject("o1", "b"))
            rels = tuple(SGRelation(f"r{i}", "o0", p, "o1") for i, p in enumerate([positive, *present]))
            return {"negatives": list(self.lexical.negatives_for(SceneGraph("x", "x", objects, rels), rng)["r0"])}
        if "must be replaced" in text:
            return {"negative": self._replacement(text, rng)}
        if "Write one natural" in text:
            m = re.search(r'"the (.+?) (.+) the (.+?)"\. Write one natural "What" question whose answer is the (subject|object)', text)
            subject, predicate, obj, side = m.groups()
            copula, core = strip_copula(predicate)
            if side == "subject":
                return {"question": f"What {predicate} the [CONTEXT]?"}
            return {"question": f"What {copula.strip()} the [CONTEXT] {core}?" if copula else f"What does the [CONTEXT] {predicate}?"}
        return {"error": "unknown prompt"}

    def _replacement(self, text: str, rng: random.Random) -> str:
        kind = re.search(r"For the (object|attribute|relation) ", text).group(1)
        taken = {q.lower() for q in _QUOTED.findall(text)}
        for lst in re.findall(r"(\[.*?\])", text):
            try:
                taken |= {x.lower() for x in json.loads(lst) if isinstance(x, str)}
            except json.JSONDecodeError:
                continue
        positive = _QUOTED.findall(text)[0]
        for attempt in range(20):
            g = SceneGraph("x", "x", (SGObject("o0", positive if kind == "object" else "thing",
                                                (SGAttribute("a0", positive),) if kind == "attribute" else ()),
                                       SGObject("o1", "b")),
                           (SGRelation("r0", "o0", positive, "o1"),) if kind == "relation" else ())
            negs = self.lexical.negatives_for(g, random.Random(f"{rng.random()}:{attempt}"))
            for n in negs[{"object": "o0", "attribute": "a0", "relation": "r0"}[kind]]:
                if n.lower() not in taken:
                    return n
        return f"{positive} (replaced)"

    @staticmethod
    def _letters(question: str) -> dict[str, Any]:
        """A reproducible distribution over A-E: confident for about a third of the questions."""
        rng = random.Random(_digest(question))
        choice = rng.randrange(5)
        confident = rng.random() < 0.35
        logits = [rng.uniform(-1, 1) for _ in range(5)]
        logits[choice] += 6.0 if confident else 1.0
        top = [{"token": LETTERS[i], "logprob": logits[i] - math.log(sum(math.exp(x) for x in logits))} for i in range(5)]
        best = max(top, key=lambda t: t["logprob"])
        return {"content": [{"token": best["token"], "logprob": best["logprob"], "top_logprobs": top}]}

    def _completion(self, request: dict, content: str, logprobs: dict | None = None) -> dict[str, Any]:
        prompt_chars = sum(len(json.dumps(m["content"])) for m in request["messages"])
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content or (logprobs and logprobs["content"][0]["token"])}}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return {"id": "chatcmpl-" + _digest(request["messages"])[:12], "object": "chat.completion", "model": self.model,
                "choices": [choice],
                "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": max(1, len(content) // 4),
                          "total_tokens": prompt_chars // 4 + max(1, len(content) // 4)}}


class _Server(ThreadingHTTPServer):
    """A threading HTTP server whose listen backlog holds a real client's concurrency (the
    ``socketserver`` default of 5 resets connections beyond a few dozen in flight)."""

    request_queue_size = 1024
    daemon_threads = True


class ScriptedServer:
    """``ScriptedLLM`` behind ``POST /v1/chat/completions`` on 127.0.0.1 (a background thread).

    ``hook(request_json, n) -> (status, body_bytes) | None`` may replace the n-th answer (fault
    injection); ``answered`` counts the successful answers per prompt (digest of the messages);
    ``GET /v1/models`` lists ``models``; ``peak_in_flight`` is the most requests served at once.
    ``drip`` sends each answer's headers at once and then its body one byte every ``drip``
    seconds (a server that never times out a read), the model list too with ``drip_models``.
    """

    def __init__(self, llm: ScriptedLLM | None = None, *, port: int = 0, delay: float = 0.0,
                 hook: Callable[[dict, int], tuple[int, bytes] | None] | None = None,
                 models: tuple[str, ...] = ("scripted", "scripted-vl"), drip: float = 0.0, drip_models: bool = False):
        self.llm = llm or ScriptedLLM()
        self.models = models
        self.delay, self.hook = delay, hook
        self.drip, self.drip_models = drip, drip_models
        self.requests = 0
        self.answered: dict[str, int] = {}
        self._lock = threading.Lock()
        self.in_flight = self.peak_in_flight = 0
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    listing = {"object": "list", "data": [{"id": m, "object": "model"} for m in outer.models]}
                    self._send(200, json.dumps(listing).encode(), drip=outer.drip if outer.drip_models else 0.0)
                else:
                    self._send(404, b'{"error": "not found"}')

            def _send(self, status: int, data: bytes, drip: float = 0.0) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if not drip:
                        self.wfile.write(data)
                    for i in range(len(data) if drip else 0):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with outer._lock:
                    outer.requests += 1
                    n = outer.requests
                    outer.in_flight += 1
                    outer.peak_in_flight = max(outer.peak_in_flight, outer.in_flight)
                try:
                    self._answer(body, n)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

            def _answer(self, body: dict, n: int) -> None:
                injected = outer.hook(body, n) if outer.hook else None
                if outer.delay:
                    time.sleep(outer.delay)
                if injected is not None:
                    status, data = injected
                else:
                    status, data = 200, json.dumps(outer.llm.respond(body)).encode()
                    with outer._lock:
                        key = _digest(body["messages"])
                        outer.answered[key] = outer.answered.get(key, 0) + 1
                self._send(status, data, drip=outer.drip)

        return Handler

    def serve_forever(self) -> None:
        """Block serving (``python -m finer_datasets.testing.scripted --port N``)."""
        self._server.serve_forever()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Serve the scripted FINER LLM on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    server = ScriptedServer(port=parser.parse_args().port)
    print(f"serving {server.url}", flush=True)
    server.serve_forever()
