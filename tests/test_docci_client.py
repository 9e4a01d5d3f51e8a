"""The chat client's per-event-loop sessions (what FINER-DOCCI's many stages rely on): one pooled
HTTP client per loop, closed at the end of ``run``; a client used across several loops (the
discriminator: relation validation, then the entropy filter) keeps its concurrency bound; an
answer is parsed once for the asker that fetched it."""

import asyncio
import threading
import time

import httpx

import finer_datasets.llm.client as client_module
from finer_datasets.llm import (
    LIBRARY_PROMPTS,
    ChatClient,
    LLMConfig,
    PromptSet,
    TranscriptStore,
    json_parser,
)
from finer_datasets.testing.scripted import ScriptedServer

render = PromptSet(LIBRARY_PROMPTS).render
SCHEMA = {"type": "object", "required": ["negatives"],
          "properties": {"negatives": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "string"}}}}
NAMES = ["cat", "dog", "car", "tree", "cup", "lamp", "book", "box", "kite", "boat", "bird", "sun"]


def prompts(names):
    return [render("negatives.object", positive=n, present=[n]) for n in names]


def chat(server, tmp_path, name, **kw):
    config = LLMConfig(base_url=server.url, model="scripted", api_key_env="", backoff=0.01, **kw)
    return ChatClient(config, TranscriptStore(tmp_path / f"{name}.sqlite"))


def test_one_pooled_http_client_per_event_loop_closed_after_run(tmp_path, monkeypatch):
    made = []

    class Counting(httpx.AsyncClient):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(client_module.httpx, "AsyncClient", Counting)
    with ScriptedServer() as server:
        c = chat(server, tmp_path, "a", concurrency=4)

        async def many(names):
            return await asyncio.gather(*[c.ask(m, json_parser(SCHEMA)) for m in prompts(names)])

        assert len(c.run(many(NAMES[:6]))) == 6
        assert len(made) == 1 and made[0].is_closed  # 6 requests, one client, closed with the loop
        c.run(many(NAMES[6:]))
        assert len(made) == 2 and all(m.is_closed for m in made) and server.requests == 12


def test_a_client_used_in_several_event_loops_keeps_its_bound(tmp_path):
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow(body, n):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.03)
        with lock:
            in_flight[0] -= 1

    with ScriptedServer(hook=slow) as server:
        driver = chat(server, tmp_path, "driver", concurrency=8)
        other = chat(server, tmp_path, "other", concurrency=2)  # like the discriminator's client

        async def through_other(names):  # the other client's asks run in the driver's loop
            return await asyncio.gather(*[other.ask(m, json_parser(SCHEMA)) for m in prompts(names)])

        first = driver.run(through_other(NAMES[:6]))   # loop 1
        second = driver.run(through_other(NAMES[6:]))  # loop 2: the bound must hold here too
    assert len(first) == len(second) == 6 and all(len(a["negatives"]) == 4 for a in first + second)
    assert peak[0] == 2 and server.requests == 12


def test_an_answer_is_parsed_once_for_the_asker_that_fetched_it(tmp_path):
    calls = []
    parse = json_parser(SCHEMA)

    def counting(response):
        calls.append(1)
        return parse(response)

    with ScriptedServer() as server:
        c = chat(server, tmp_path, "p")
        c.run(c.ask(prompts(["cat"])[0], counting))
        assert len(calls) == 1
        c.run(c.ask(prompts(["cat"])[0], counting))  # a repeat ask of the same key parses its copy
        assert len(calls) == 2 and server.requests == 1
