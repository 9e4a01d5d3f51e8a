"""finer_datasets.fetch against the local image server (127.0.0.1 only, no network)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image

from finer_datasets.fetch import (
    AddressPolicy,
    CacheBusyError,
    ImageCache,
    check_image,
    default_transport,
    fetch_images,
)
from finer_datasets.fetch.cache import url_key
from finer_datasets.fetch.politeness import (
    HostGate,
    backoff_delay,
    interleave_by_host,
    parse_retry_after,
)
from finer_datasets.testing.image_server import (
    ImageServer,
    LoopbackTransport,
    decompression_bomb_png,
)

FAST = {"timeout": 2.0, "deadline": 10.0, "backoff": 0.01, "max_backoff": 0.05, "retries": 2, "progress": False}


def _noise_image(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    img.save(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    _noise_image(root / "a.jpg", (64, 48), 0)
    _noise_image(root / "b.png", (32, 16), 1)
    for i in range(40):
        _noise_image(root / f"n{i:02d}.jpg", (16, 16), 100 + i)
    return root


@pytest.fixture
def server(images):
    with ImageServer(images, slow_interval=0.05) as srv:
        yield srv


def run(urls, cache, **options):
    return fetch_images(urls, cache, transport=LoopbackTransport(), **{**FAST, **options})


def ok_urls(cache_dir: Path) -> set[str]:
    """URLs with an ``ok`` row, read straight from the index (read-only, safe while a writer runs)."""
    with closing(sqlite3.connect(f"file:{cache_dir / 'index.sqlite'}?mode=ro", uri=True)) as db:
        return {u for (u,) in db.execute("SELECT url FROM images WHERE status = 'ok'")}


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# --- good images -----------------------------------------------------------------------------
def test_good_images_are_verified_hashed_and_stored_atomically(server, images, tmp_path):
    urls = [server.url("/files/a.jpg", "one.test"), server.url("/files/b.png", "two.test")]
    report = run(urls, tmp_path / "c")
    assert (report.total, report.ok, report.fetched, report.cached, report.dead_count) == (2, 2, 2, 0, 0)
    assert report.bytes == (images / "a.jpg").stat().st_size + (images / "b.png").stat().st_size
    with ImageCache(tmp_path / "c") as cache:
        a, b = cache.get(urls[0]), cache.get(urls[1])
        assert (a.status, a.format, a.width, a.height, a.attempts) == ("ok", "JPEG", 64, 48, 1)
        assert (b.format, b.width, b.height, b.content_type) == ("PNG", 32, 16, "image/png")
        data = (images / "a.jpg").read_bytes()
        assert cache.read(urls[0]) == data and a.sha256 == hashlib.sha256(data).hexdigest() and a.size == len(data)
        assert cache.path(urls[0]).name == url_key(urls[0]) == hashlib.sha256(urls[0].encode()).hexdigest()
        assert files_in(tmp_path / "c" / "images") == sorted([cache.path(urls[0]), cache.path(urls[1])])
    assert files_in(tmp_path / "c" / "tmp") == []


@pytest.mark.parametrize("route", ["/as/text/plain/a.jpg", "/as/application/octet-stream/a.jpg"])
def test_wrong_content_type_with_valid_image_bytes_is_accepted_by_decode(server, tmp_path, route):
    url = server.url(route, "h.test")
    assert run([url], tmp_path / "c").ok == 1
    with ImageCache(tmp_path / "c") as cache:
        assert cache.get(url).content_type == route.split("/", 2)[2].rsplit("/", 1)[0]


def test_redirects_are_followed_and_bounded(server, tmp_path):
    ok, far = server.url("/redirect/2/a.jpg", "h.test"), server.url("/redirect/4/b.png", "h.test")
    report = run([ok, far], tmp_path / "c", max_redirects=3)
    assert report.ok == 1 and report.dead == {"too_many_redirects": 1}
    with ImageCache(tmp_path / "c") as cache:
        assert cache.get(ok).final_url.endswith("/files/a.jpg")


# --- dead URLs: one reason each, never an exception ------------------------------------------
DEAD = [  # route, reason, attempts (retries=2: transient failures are tried 3 times), requests seen
    ("/status/404", "http_404", 1, 1),
    ("/status/410", "http_410", 1, 1),
    ("/status/403", "http_403", 1, 1),
    ("/status/500", "http_500", 3, 3),
    ("/status/503", "http_503", 3, 3),
    ("/html", "not_an_image", 1, 1),
    ("/cut/a.jpg", "corrupt", 1, 1),
    ("/truncated/a.jpg", "corrupt", 3, 3),
    ("/loop", "too_many_redirects", 1, 6),  # one attempt: 1 + max_redirects requests
    ("/huge/3000000", "too_large", 1, 1),
    ("/huge-unsized/3000000", "too_large", 1, 1),
    ("/bomb.png", "too_many_pixels", 1, 1),
]


@pytest.mark.parametrize("route,reason,attempts,hits", DEAD, ids=[d[1] + d[0] for d in DEAD])
def test_dead_urls_end_with_their_reason(server, tmp_path, route, reason, attempts, hits):
    url = server.url(route, "h.test")
    report = run([url], tmp_path / "c", max_bytes=2_000_000)
    assert report.dead == {reason: 1} and report.ok == 0 and report.dead_rate == 1.0
    assert server.requests[route] == hits and report.requests == attempts
    with ImageCache(tmp_path / "c") as cache:
        entry = cache.get(url)
        assert (entry.status, entry.reason, entry.attempts) == ("dead", reason, attempts)
    assert files_in(tmp_path / "c" / "images") == [] and files_in(tmp_path / "c" / "tmp") == []


def test_read_timeout_and_attempt_deadline(images, tmp_path):
    with ImageServer(images, slow_interval=1.0) as srv:  # a byte per second: the read timeout fires
        report = run([srv.url("/slow/a.jpg", "h.test")], tmp_path / "c1", timeout=0.2, retries=1)
        assert report.dead == {"timeout": 1} and srv.requests["/slow/a.jpg"] == 2
    with ImageServer(images, slow_interval=0.02) as srv:  # steady trickle: only the deadline ends it
        started = time.monotonic()
        report = run([srv.url("/slow/a.jpg", "h.test")], tmp_path / "c2", timeout=1.0, deadline=0.3, retries=0)
        assert report.dead == {"timeout": 1} and time.monotonic() - started < 3


def test_many_bad_urls_are_counted_not_raised(server, tmp_path):
    good = [server.url(f"/files/n{i:02d}.jpg", "h.test") for i in range(6)]
    bad = [server.url("/status/404", "h.test"), server.url("/html", "x.test"), "ftp://example.org/a.jpg",
           "not a url", ""]
    report = run(good + bad + good[:2], tmp_path / "c")  # duplicates are fetched and counted once
    assert report.total == 11 and report.ok == 6 and server.requests["/files/n00.jpg"] == 1
    assert report.dead == {"http_404": 1, "not_an_image": 1, "invalid_url": 3}
    assert report.dead_rate == pytest.approx(5 / 11)
    assert "dead 5 (45.5%)" in report.summary()


def test_max_pixels_is_checked_before_decoding(server, tmp_path):
    report = run([server.url("/files/a.jpg", "h.test")], tmp_path / "c", max_pixels=64 * 48 - 1)
    assert report.dead == {"too_many_pixels": 1}


# --- retries and politeness ------------------------------------------------------------------
def test_5xx_is_retried_until_it_succeeds(server, tmp_path):
    url = server.url("/flaky/2/a.jpg", "h.test")
    report = run([url], tmp_path / "c")
    assert report.ok == 1 and report.requests == 3 == server.requests["/flaky/2/a.jpg"]
    with ImageCache(tmp_path / "c") as cache:
        assert cache.get(url).attempts == 3


def test_retry_after_pauses_the_whole_host(server, tmp_path):
    urls = [server.url("/ratelimit/1/a.jpg", "h.test"), server.url("/files/b.png", "h.test"),
            server.url("/files/n00.jpg", "h.test")]
    report = run(urls, tmp_path / "c", per_host=1)
    assert report.ok == 3 and server.requests["/ratelimit/1/a.jpg"] == 2
    first = server.log[0]
    assert first[2] == "/ratelimit/1/a.jpg"
    assert all(t - first[0] >= 0.95 for t, _, _ in server.log[1:])  # nothing started during the pause


def test_retry_after_beyond_the_limit_ends_the_url(server, tmp_path):
    report = run([server.url("/ratelimit/600/a.jpg", "h.test")], tmp_path / "c", max_retry_after=5)
    assert report.dead == {"http_429": 1} and report.requests == 1


def test_concurrency_bounds_per_host_and_overall(images, tmp_path):
    with ImageServer(images, latency=0.05) as srv:
        urls = [srv.url(f"/files/n{i:02d}.jpg", f"h{i % 3}.test") for i in range(36)]
        run(urls, tmp_path / "c1", per_host=2, concurrency=64)
        assert dict(srv.peak_per_host) == {"h0.test": 2, "h1.test": 2, "h2.test": 2}
        srv.reset()
        run(urls, tmp_path / "c2", per_host=8, concurrency=64)  # control: the server does see more
        assert min(srv.peak_per_host.values()) > 2
        srv.reset()
        run(urls, tmp_path / "c3", per_host=8, concurrency=3)
        assert srv.peak_total == 3


def test_min_interval_spaces_requests_to_a_host(server, tmp_path):
    urls = [server.url(f"/files/n{i:02d}.jpg", "h.test") for i in range(4)]
    run(urls, tmp_path / "c", per_host=4, min_interval=0.2)
    starts = [t for t, _, _ in server.log]
    assert len(starts) == 4 and all(b - a >= 0.19 for a, b in itertools.pairwise(starts))


# --- resume ----------------------------------------------------------------------------------
_CHILD = """
import sys
from finer_datasets.fetch import fetch_images
port, cache = int(sys.argv[1]), sys.argv[2]
urls = [f"http://127.0.0.1:{port}/files/n{i:02d}.jpg" for i in range(40)]
fetch_images(urls, cache, concurrency=2, per_host=2, progress=False, allow_private_addresses=True)
"""


def test_killed_fetch_resumes_without_refetching_or_partial_files(images, tmp_path):
    cache_dir = tmp_path / "c"
    with ImageServer(images, latency=0.1) as srv:
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CHILD), str(srv.port), str(cache_dir)])
        try:
            done: set[str] = set()
            deadline = time.monotonic() + 60
            while len(done) < 8 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.05)
                try:  # the child may not have created the file or the table yet
                    done = ok_urls(cache_dir)
                except sqlite3.OperationalError:
                    continue
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait()
        urls = [srv.url(f"/files/n{i:02d}.jpg") for i in range(40)]
        done = ok_urls(cache_dir)  # what had finished when it died
        on_disk = {p.name for p in files_in(cache_dir / "images")}
        finished = done | {u for u in urls if url_key(u) in on_disk}  # + files whose row was not committed
        assert child.returncode == -signal.SIGKILL and 8 <= len(done) and len(finished) < 40
        report = fetch_images(urls, cache_dir, progress=False, allow_private_addresses=True)
        assert report.ok == 40 and report.cached == len(finished) and report.fetched == 40 - len(finished)
        for url in finished:
            assert srv.requests[httpx.URL(url).path] == 1  # finished before the kill: never fetched again
        assert all(srv.requests[f"/files/n{i:02d}.jpg"] >= 1 for i in range(40))
    assert files_in(cache_dir / "tmp") == []
    with ImageCache(cache_dir) as cache:
        stored = files_in(cache_dir / "images")
        assert stored == sorted(cache.path(u) for u in urls)
        for i, url in enumerate(urls):
            assert cache.read(url) == (images / f"n{i:02d}.jpg").read_bytes()


def test_orphan_file_is_indexed_without_a_request_and_a_bad_one_is_refetched(server, tmp_path):
    a, b = server.url("/files/a.jpg", "h.test"), server.url("/files/b.png", "h.test")
    run([a, b], tmp_path / "c")
    with closing(sqlite3.connect(tmp_path / "c" / "index.sqlite")) as db:  # as if killed before the commits
        db.execute("DELETE FROM images")
        db.commit()
    with ImageCache(tmp_path / "c") as cache:
        cache.path(b).write_bytes(b"half an ima")
    report = run([a, b], tmp_path / "c")
    assert report.ok == 2 and report.cached == 1 and report.fetched == 1
    assert server.requests["/files/a.jpg"] == 1 and server.requests["/files/b.png"] == 2


def test_missing_file_is_fetched_again(server, tmp_path):
    url = server.url("/files/a.jpg", "h.test")
    run([url], tmp_path / "c")
    with ImageCache(tmp_path / "c") as cache:
        cache.path(url).unlink()
        assert cache.get(url) is None
    assert run([url], tmp_path / "c").fetched == 1 and server.requests["/files/a.jpg"] == 2


def test_dead_urls_are_skipped_unless_retry_dead_and_transient(server, tmp_path):
    gone, busy = server.url("/status/404", "h.test"), server.url("/status/503", "h.test")
    run([gone, busy], tmp_path / "c", retries=0)
    again = run([gone, busy], tmp_path / "c", retries=0)
    assert again.cached == 2 and again.requests == 0 and again.dead == {"http_404": 1, "http_503": 1}
    retried = run([gone, busy], tmp_path / "c", retries=0, retry_dead=True)
    assert retried.requests == 1 and server.requests["/status/503"] == 2 and server.requests["/status/404"] == 1


def test_cache_is_single_process_and_cleans_tmp_on_open(tmp_path):
    with ImageCache(tmp_path / "c"):
        (tmp_path / "c" / "tmp" / "x.part").write_bytes(b"partial")
        with pytest.raises(CacheBusyError, match="in use"):
            ImageCache(tmp_path / "c").open()
    with ImageCache(tmp_path / "c"):
        assert files_in(tmp_path / "c" / "tmp") == []


def test_a_cache_opened_by_the_caller_stays_open(server, tmp_path):
    with ImageCache(tmp_path / "c") as cache:
        report = run([server.url("/files/a.jpg", "h.test")], cache)
        assert report.ok == 1 and cache.is_open and len(cache) == 1


def test_default_transport_keeps_each_host_on_one_small_pool(server, tmp_path):
    seen: dict[int, set[str]] = {}

    def counting(shard_id: int):
        class Counting(LoopbackTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                seen.setdefault(shard_id, set()).add(request.url.host)
                return await super().handle_async_request(request)
        return Counting

    shard_ids = iter(range(100))
    transport = default_transport(16, per_shard=4, wrap=lambda pool: counting(next(shard_ids))(pool),
                                  policy=AddressPolicy(allow_private=True))
    assert len(transport.shards) == 4
    urls = [server.url(f"/files/n{i:02d}.jpg", f"h{i % 8}.test") for i in range(24)]
    assert fetch_images(urls, tmp_path / "c", transport=transport, **FAST).ok == 24
    hosts = [h for shard in seen.values() for h in shard]
    assert len(hosts) == len(set(hosts)) == 8 and len(seen) > 1  # every host on exactly one pool, several pools
    assert all(transport.shard_for(h) is transport.shards[i] for i, shard in seen.items() for h in shard)


def test_proxies_from_the_environment_are_honoured(server, tmp_path, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.port}")
    report = fetch_images(["http://nowhere.test/files/a.jpg"], tmp_path / "c", **FAST)  # default transport
    assert report.ok == 1 and server.requests["/files/a.jpg"] == 1 and "nowhere.test" in server.peak_per_host


# --- injected transports (no server) ---------------------------------------------------------
def test_injected_transport_replaces_the_network(images, tmp_path):
    jpeg = (images / "a.jpg").read_bytes()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "down.example":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, content=jpeg, headers={"Content-Type": "image/jpeg"})

    report = fetch_images(["https://img.example/a.jpg", "https://down.example/b.jpg"], tmp_path / "c",
                          transport=httpx.MockTransport(handler), **{**FAST, "retries": 1})
    assert report.ok == 1 and report.dead == {"connection": 1}
    assert seen.count("https://down.example/b.jpg") == 2


def test_an_unexpected_error_is_raised_not_swallowed(tmp_path):
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug in a transport")

    with pytest.raises(RuntimeError, match="bug in a transport"):
        fetch_images(["https://img.example/a.jpg"], tmp_path / "c", transport=httpx.MockTransport(handler), **FAST)
    with ImageCache(tmp_path / "c") as cache:  # released and consistent
        assert len(cache) == 0


@pytest.mark.parametrize("option,value", [("concurrency", 0), ("per_host", 0), ("retries", -1), ("max_bytes", 0)])
def test_bad_options_are_rejected(tmp_path, option, value):
    with pytest.raises(ValueError, match=option):
        fetch_images([], tmp_path / "c", **{**FAST, option: value})


# --- pieces ----------------------------------------------------------------------------------
def test_check_image_reasons(images):
    jpeg = (images / "a.jpg").read_bytes()
    assert check_image(jpeg, "image/jpeg").reason is None
    assert check_image(jpeg[: len(jpeg) // 2], "image/jpeg").reason == "corrupt"
    assert check_image(b"<html>oops</html>", "image/jpeg").reason == "not_an_image"
    assert check_image(b"\x01\x02 binary junk", "application/json").reason == "not_an_image"
    assert check_image(b"\x01\x02 binary junk", "image/png").reason == "corrupt"
    assert check_image(b"", None).reason == "not_an_image"
    assert check_image(decompression_bomb_png(), "image/png").reason == "too_many_pixels"
    small_bomb = decompression_bomb_png(300, 200)  # under Pillow's limit: our own check catches it
    assert check_image(small_bomb, max_pixels=59_999).reason == "too_many_pixels"
    verdict = check_image(small_bomb, max_pixels=60_000)
    assert (verdict.reason, verdict.format, verdict.width, verdict.height) == (None, "PNG", 300, 200)
    assert verdict.sha256 == hashlib.sha256(small_bomb).hexdigest() and len(decompression_bomb_png()) < 100_000


def test_retry_after_parsing():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp) == pytest.approx(30.0)
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now.timestamp) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("-3") is None


def test_backoff_is_exponential_capped_and_seeded():
    delays = [backoff_delay(k, random.Random(1), base=1.0, cap=8.0) for k in range(6)]
    for k, d in enumerate(delays):
        full = min(8.0, 2.0 ** k)
        assert full / 2 <= d <= full
    assert delays == [backoff_delay(k, random.Random(1), base=1.0, cap=8.0) for k in range(6)]


def test_host_gate_forgets_idle_hosts_but_not_paused_ones():
    async def main() -> HostGate:
        gate = HostGate(per_host=2)
        gate.defer("paused", 60)
        for i in range(5000):
            async with gate.slot(f"h{i}"):
                pass
        return gate

    gate = asyncio.run(main())
    assert len(gate) < 2100 and "paused" in gate._hosts


def test_interleave_by_host_is_round_robin_and_keeps_each_hosts_order():
    urls = ["http://a/1", "http://a/2", "http://a/3", "http://b/1", "bad", "http://c/1", "http://b/2"]
    assert list(interleave_by_host(urls)) == ["bad", "http://a/1", "http://b/1", "http://c/1", "http://a/2",
                                              "http://b/2", "http://a/3"]
