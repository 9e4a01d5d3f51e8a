"""The address policy of finer_datasets.fetch (what a fetch may connect to) and the sanitizing of
model-server answers: local servers on 127.0.0.1 only, no network."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
import urllib.parse

import httpcore
import pytest
from PIL import Image

from finer_datasets.fetch import REFUSED, AddressPolicy, ImageCache, fetch_images
from finer_datasets.fetch import address as address_module
from finer_datasets.fetch.address import AddressRefused, GuardedBackend, address_kind
from finer_datasets.llm import LLMConfig, TranscriptStore
from finer_datasets.llm.client import SHOWN_FAILURES, ChatClient, LLMAnswerError
from finer_datasets.llm.sanitize import redact, scrub, server_reason
from finer_datasets.testing.image_server import ImageServer
from finer_datasets.testing.scripted import ScriptedServer

FAST = {"timeout": 2.0, "deadline": 5.0, "backoff": 0.01, "max_backoff": 0.05, "retries": 2, "progress": False}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "a.jpg")
    Image.new("RGB", (8, 8), (10, 200, 10)).save(root / "b.jpg")
    return root


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fd00:ec2::254", "private"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("100.64.0.1", "private"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "private"), ("255.255.255.255", "private"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a9fe:a9fe", "link-local"), ("64:ff9b::808:808", None),
    ("8.8.8.8", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
])
def test_address_kinds(address, kind):
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_allowed_servers_are_exact():
    policy = AddressPolicy.of(allow_servers=["127.0.0.1:8080", "[::1]:9"])
    assert policy.refusal("127.0.0.1", 8080) is None and policy.refusal("::ffff:127.0.0.1", 8080) is None
    assert policy.refusal("::1", 9) is None
    assert policy.refusal("127.0.0.1", 8081) == "loopback" and policy.refusal("127.0.0.2", 8080) == "loopback"
    assert AddressPolicy(allow_private=True).refusal("169.254.169.254", 80) is None
    with pytest.raises(ValueError, match="IP:PORT"):
        AddressPolicy.of(allow_servers=["localhost"])


# --- fetch_images ------------------------------------------------------------------------------
def test_internal_addresses_are_refused_without_a_request(images, tmp_path):
    with ImageServer(images) as internal:
        p = internal.port
        urls = [f"http://127.0.0.1:{p}/files/a.jpg", f"http://localhost:{p}/files/b.jpg", f"http://2130706433:{p}/x",
                f"http://0x7f.0.0.1:{p}/y", f"http://127.1:{p}/z", f"http://[::ffff:127.0.0.1]:{p}/w",
                f"http://[::1]:{p}/v", "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/",
                "http://10.255.255.1/a.jpg", "http://0.0.0.0/a.jpg", "http://224.0.0.1/a.jpg"]
        started = time.monotonic()
        report = fetch_images(urls, tmp_path / "c", **FAST)
        assert time.monotonic() - started < 5  # refused at once: no connect, no timeout, no retry
        assert report.dead == {REFUSED: len(urls)} and report.requests == len(urls)
        assert sum(internal.requests.values()) == 0
        with ImageCache(tmp_path / "c") as cache:
            assert {cache.get(u).attempts for u in urls} == {1}
        # a refusal is checked again on the next run: allowed now, the images are fetched
        report = fetch_images(urls[:2], tmp_path / "c", allow_private_addresses=True, **FAST)
        assert report.ok == 2 and report.cached == 0 and internal.requests["/files/a.jpg"] == 1


def test_redirects_are_checked_and_only_the_allowed_server_is_reached(images, tmp_path):
    with ImageServer(images) as mirror, ImageServer(images) as metadata:
        target = f"http://127.0.0.1:{metadata.port}/latest/meta-data/"
        urls = [mirror.url("/to/" + urllib.parse.quote(target, safe="")),
                mirror.url("/to/" + urllib.parse.quote("http://169.254.169.254/latest/", safe="")),
                mirror.url("/redirect/2/a.jpg")]  # redirects within the allowed server are fine
        report = fetch_images(urls, tmp_path / "c", allow_servers=[f"127.0.0.1:{mirror.port}"], **FAST)
        assert report.ok == 1 and report.dead == {REFUSED: 2}
        assert sum(metadata.requests.values()) == 0 and mirror.requests["/files/a.jpg"] == 1
        report = fetch_images(urls[:1], tmp_path / "c2", allow_private_addresses=True, **FAST)
        assert report.dead == {"http_404": 1} and metadata.requests["/latest/meta-data/"] == 1


def test_through_an_environment_proxy_each_hop_is_checked(images, tmp_path, monkeypatch):
    with ImageServer(images) as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url(""))
        report = fetch_images(["http://127.0.0.1:9/files/a.jpg", "http://169.254.169.254/files/b.jpg",
                               "http://nowhere.test/files/a.jpg"], tmp_path / "c", **FAST)
        assert report.dead == {REFUSED: 2} and report.ok == 1  # the proxy resolves the name it alone knows
        assert proxy.requests["/files/a.jpg"] == 1 and proxy.requests["/files/b.jpg"] == 0


# --- pinning -----------------------------------------------------------------------------------
class Recording(httpcore.AsyncNetworkBackend):
    def __init__(self):
        self.connects: list[str] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connects.append(host)
        raise httpcore.ConnectError("recorded")

    async def sleep(self, seconds):
        pass


def _resolver(answers: list[list[str]], calls: list[str]):
    async def getaddrinfo(host, port, *args, **kwargs):
        calls.append(host)
        addresses = answers[min(len(calls), len(answers)) - 1]
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]

    return getaddrinfo


def test_the_connection_goes_to_the_checked_address(monkeypatch):
    """One lookup per connection, and the connect is to that lookup's address (a DNS answer that
    changes between a check and a connect, "rebinding", cannot reach 127.0.0.1)."""
    import anyio

    calls: list[str] = []
    monkeypatch.setattr(address_module.anyio, "getaddrinfo", _resolver([["93.184.215.14"], ["127.0.0.1"]], calls))
    inner = Recording()
    backend = GuardedBackend(AddressPolicy(), inner)
    with pytest.raises(httpcore.ConnectError, match="recorded"):
        anyio.run(backend.connect_tcp, "rebind.example", 80)
    assert calls == ["rebind.example"] and inner.connects == ["93.184.215.14"]
    calls.clear()
    monkeypatch.setattr(address_module.anyio, "getaddrinfo", _resolver([["93.184.215.14", "10.0.0.5"]], calls))
    with pytest.raises(AddressRefused, match="10.0.0.5, a private address"):
        anyio.run(backend.connect_tcp, "mixed.example", 80)
    assert inner.connects == ["93.184.215.14"]  # nothing new


def test_an_unresolvable_host_is_a_connection_failure(tmp_path, monkeypatch):
    async def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(address_module.anyio, "getaddrinfo", fail)
    report = fetch_images(["http://gone.example/a.jpg"], tmp_path / "c", **{**FAST, "retries": 0})
    assert report.dead == {"connection": 1}


# --- model servers: what may be shown ----------------------------------------------------------
def test_server_reasons_are_short_and_never_hold_the_key():
    key = "sk-live-0123456789abcdef"
    body = json.dumps({"error": {"message": f"Invalid key {key}\x1b[31m\n" + "y" * 500, "type": "invalid"}})
    reason = server_reason(body, key)
    assert key not in reason and "[redacted]" in reason and "\x1b" not in reason and len(reason) <= 120
    assert server_reason('{"error": "model busy"}') == "model busy"
    assert server_reason('{"detail": [{"msg": "field required"}]}') == "field required"
    assert server_reason("<html>" + key + "</html>", key) == "a 37-byte body without a JSON error message"
    assert server_reason("") == "an empty body"
    assert redact("token " + "A" * 40 + " end") == "token [redacted] end"
    assert scrub('{"a": "' + key + '"}', key) == '{"a": "[redacted]"}' and scrub("abc", "ab") == "abc"


def _client(url: str, store, **config) -> ChatClient:
    return ChatClient(LLMConfig(base_url=url, model="scripted", api_key_env="FINER_TEST_KEY", backoff=0.01,
                                max_retries=0, **config), store)


def _ask(client: ChatClient, n: int) -> list:
    async def one(i):
        try:
            return await client.ask([{"role": "user", "content": f"q{i}"}], lambda r: (r, None))
        except LLMAnswerError as exc:
            return exc

    async def many():
        return [await one(i) for i in range(n)]

    return client.run(many())


def test_an_answer_echoing_the_key_is_scrubbed_before_it_is_kept(tmp_path, monkeypatch):
    key = "sk-echo-" + "9" * 20
    monkeypatch.setenv("FINER_TEST_KEY", key)
    answer = json.dumps({"choices": [{"message": {"content": f"your key is {key}"}}]}).encode()
    with ScriptedServer(hook=lambda body, n: (200, answer)) as server:
        store = TranscriptStore(tmp_path / "t.sqlite")
        (got,) = _ask(_client(server.url, store), 1)
        store.close()
    assert got["choices"][0]["message"]["content"] == "your key is [redacted]"
    assert all(key.encode() not in p.read_bytes() for p in tmp_path.iterdir())


def test_refusals_open_the_breaker_only_when_every_request_is_refused(tmp_path, monkeypatch, caplog):
    from finer_datasets.errors import LLMError

    monkeypatch.setenv("FINER_TEST_KEY", "sk-refused-key")
    with ScriptedServer(hook=lambda body, n: (400, b'{"error": "no"}') if n % 8 else None) as server:
        results = _ask(_client(server.url, TranscriptStore(tmp_path / "a.sqlite"), concurrency=1), 30)
    assert sum(isinstance(r, LLMAnswerError) for r in results) == 27  # answers in between reset the count
    with ScriptedServer(hook=lambda body, n: (400, b'{"error": "no"}')) as server:
        client = _client(server.url, TranscriptStore(tmp_path / "b.sqlite"), concurrency=1)
        with pytest.raises(LLMError, match=r"8 requests in a row refused \(HTTP 400: no\); circuit breaker open"):
            _ask(client, 30)
        assert server.requests == 8


def test_unanswered_requests_are_logged_a_few_then_counted(tmp_path, caplog):
    client = _client("http://127.0.0.1:9/v1", TranscriptStore(tmp_path / "t.sqlite"))

    async def noisy():
        for i in range(40):
            client.note_unanswered(f"element {i}", LLMAnswerError("HTTP 400: no"))

    with caplog.at_level(logging.WARNING):
        client.run(noisy())
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == SHOWN_FAILURES + 2 and lines[-1].startswith("40 requests got no usable answer")


def test_a_link_planted_in_the_cache_is_not_written_through(images, tmp_path):
    from finer_datasets.errors import OutputError
    from finer_datasets.fetch.cache import url_key

    outside = tmp_path / "outside"
    outside.mkdir()
    with ImageServer(images) as server:
        url = server.url("/files/a.jpg")
        (tmp_path / "c" / "images").mkdir(parents=True)
        (tmp_path / "c" / "images" / url_key(url)[:2]).symlink_to(outside, target_is_directory=True)
        with pytest.raises(OutputError, match="symbolic link"):
            fetch_images([url], tmp_path / "c", allow_private_addresses=True, **FAST)
        (tmp_path / "c2").mkdir()
        (tmp_path / "c2" / "lock").symlink_to(outside / "lock")
        with pytest.raises(OutputError, match="lock is a symbolic link"):
            fetch_images([url], tmp_path / "c2", allow_private_addresses=True, **FAST)
    assert list(outside.iterdir()) == []
