"""``fetch_images``: download, check and cache many image URLs, politely and resumably."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from tqdm.auto import tqdm

from finer_datasets._version import __version__
from finer_datasets.core.aio import run_async
from finer_datasets.fetch.address import REFUSED, AddressPolicy, AddressRefused
from finer_datasets.fetch.cache import CacheEntry, ImageCache
from finer_datasets.fetch.politeness import (
    HostGate,
    backoff_delay,
    host_of,
    interleave_by_host,
    parse_retry_after,
)
from finer_datasets.fetch.transport import default_transport
from finer_datasets.fetch.verify import check_image

__all__ = ["TRANSIENT_REASONS", "FetchReport", "afetch_images", "fetch_images"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Reasons that may go away by themselves (and any ``http_5xx``); ``retry_dead=True`` tries them again.
TRANSIENT_REASONS = frozenset({"timeout", "connection", "http_408", "http_429"})


def _transient(reason: str | None) -> bool:
    return reason in TRANSIENT_REASONS or (reason is not None and reason.startswith("http_5"))

_ACCEPT = "image/webp,image/png,image/jpeg,image/*;q=0.8,*/*;q=0.5"


@dataclass
class FetchReport:
    """What one ``fetch_images`` call achieved; every unique URL is counted exactly once.

    ``ok`` = ``fetched`` (downloaded and verified now) + usable images found in the cache;
    ``cached`` counts URLs settled by the cache (usable or dead) without a request; ``dead`` maps
    each reason to its number of URLs (this run's and the cache's); ``requests`` counts attempts
    (retries included; a redirect chain is one attempt).
    """

    total: int = 0
    ok: int = 0
    fetched: int = 0
    cached: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0

    @property
    def dead_count(self) -> int:
        return sum(self.dead.values())

    @property
    def dead_rate(self) -> float:
        """Dead URLs / unique URLs (0.0 for an empty run)."""
        return self.dead_count / self.total if self.total else 0.0

    @property
    def images_per_s(self) -> float:
        """Images fetched and verified in this run per second of wall time."""
        return self.fetched / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> str:
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.dead.most_common()) or "none"
        return (f"{self.ok}/{self.total} images usable ({self.fetched} fetched, {self.cached} from the cache); "
                f"dead {self.dead_count} ({self.dead_rate:.1%}): {reasons}; {self.requests} requests, "
                f"{self.bytes / 1e6:.1f} MB in {self.elapsed_s:.1f} s")


@dataclass(frozen=True)
class _Settings:
    concurrency: int
    per_host: int
    min_interval: float
    timeout: float
    deadline: float
    max_bytes: int
    max_pixels: int | None
    retries: int
    backoff: float
    max_backoff: float
    max_retry_after: float
    retry_dead: bool


@dataclass(frozen=True)
class _Body:
    data: bytes
    content_type: str | None
    final_url: str


@dataclass(frozen=True)
class _Failure:
    reason: str
    transient: bool
    retry_after: float | None = None


async def _attempt(client: httpx.AsyncClient, url: str, s: _Settings) -> _Body | _Failure:
    """One GET (redirects followed by httpx); never raises for network or HTTP trouble."""
    try:
        async with client.stream("GET", url) as response:  # each hop's address checked (.address)
            status = response.status_code
            if not 200 <= status < 300:
                transient = status in (408, 429) or status >= 500
                return _Failure(f"http_{status}", transient, parse_retry_after(response.headers.get("Retry-After")))
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > s.max_bytes:
                return _Failure("too_large", False)
            body = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > s.max_bytes:
                        return _Failure("too_large", False)
            except httpx.TimeoutException:
                return _Failure("timeout", True)
            except httpx.DecodingError:
                return _Failure("corrupt", False)
            except httpx.TransportError:  # the body stopped short (Content-Length not reached, reset)
                return _Failure("corrupt", True)
            return _Body(bytes(body), response.headers.get("Content-Type"), str(response.url))
    except AddressRefused as exc:  # the URL or a redirect names this machine or an internal network
        logger.debug("refused %s: %s", url, exc)
        return _Failure(REFUSED, False)
    except httpx.TooManyRedirects:
        return _Failure("too_many_redirects", False)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        return _Failure("invalid_url", False)
    except httpx.TimeoutException:
        return _Failure("timeout", True)
    except httpx.TransportError:
        return _Failure("connection", True)
    except httpx.HTTPError as exc:
        logger.debug("request error for %s: %r", url, exc)
        return _Failure("request_error", False)


class _Run:
    """The state of one call: settings, client, gates, cache, report and progress bar."""

    def __init__(self, s: _Settings, client: httpx.AsyncClient, cache: ImageCache, rng: random.Random,
                 pool: ThreadPoolExecutor, report: FetchReport, bar: tqdm):
        self.s, self.client, self.cache, self.rng, self.pool = s, client, cache, rng, pool
        self.report, self.bar = report, bar
        self.gate = HostGate(s.per_host, s.min_interval)
        self.network = asyncio.Semaphore(s.concurrency)

    async def _offload(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work (decode, hash, file I/O) in the worker threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    def settle(self, entry: CacheEntry, *, from_cache: bool) -> None:
        """Count one URL's final state (and commit it to the index if it is new)."""
        if not from_cache:
            self.cache.record(entry)
        self.report.cached += from_cache
        if entry.ok:
            self.report.ok += 1
            self.report.fetched += not from_cache
            self.report.bytes += 0 if from_cache else (entry.size or 0)
        else:
            self.report.dead[entry.reason or "unknown"] += 1
            logger.debug("dead: %s (%s)", entry.url, entry.reason)
        self.bar.update(1)
        if self.report.dead and self.bar.n % 64 == 0:
            self.bar.set_postfix(dead=self.report.dead_count, refresh=False)

    async def recover(self, url: str) -> bool:
        """Index an image file left without its row by a killed run; True when it was usable."""
        path = self.cache.orphan(url)
        if path is None:
            return False
        body = await self._offload(path.read_bytes)
        verdict = await self._offload(check_image, body, None, max_pixels=self.s.max_pixels)
        if verdict.reason is not None:
            path.unlink(missing_ok=True)
            return False
        self.settle(CacheEntry(url, "ok", None, verdict.sha256, verdict.size, verdict.format, verdict.width,
                               verdict.height), from_cache=True)
        return True

    async def fetch(self, url: str) -> None:
        """Fetch, check and store one URL; every failure ends as a dead entry, never an exception."""
        host = host_of(url)
        if host is None:
            self.settle(CacheEntry(url, "dead", "invalid_url"), from_cache=False)
            return
        attempts, s = 0, self.s
        while True:
            async with self.gate.slot(host), self.network:
                attempts += 1
                self.report.requests += 1
                try:
                    outcome = await asyncio.wait_for(_attempt(self.client, url, s), s.deadline)
                except asyncio.TimeoutError:
                    outcome = _Failure("timeout", True)
            if isinstance(outcome, _Body):
                break
            retry_after = outcome.retry_after
            if (not outcome.transient or attempts > s.retries
                    or (retry_after is not None and retry_after > s.max_retry_after)):
                self.settle(CacheEntry(url, "dead", outcome.reason, attempts=attempts), from_cache=False)
                return
            if retry_after is not None:
                self.gate.defer(host, retry_after)  # pauses every request to this host
            await asyncio.sleep(backoff_delay(attempts - 1, self.rng, base=s.backoff, cap=s.max_backoff))
        verdict = await self._offload(check_image, outcome.data, outcome.content_type, max_pixels=s.max_pixels)
        if verdict.reason is None:
            await self._offload(self.cache.write_image, url, outcome.data)
        self.settle(CacheEntry(url, "ok" if verdict.reason is None else "dead", verdict.reason, verdict.sha256,
                               verdict.size, verdict.format, verdict.width, verdict.height, outcome.content_type,
                               outcome.final_url, attempts), from_cache=False)


async def _run_all(run: _Run, urls: list[str]) -> None:
    window = asyncio.Semaphore(max(4 * run.s.concurrency, 64))  # bounds tasks alive at once
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        window.release()
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # a bug or a full disk, not a bad URL

    try:
        for url in interleave_by_host(urls):
            entry = run.cache.get(url)
            if entry is not None and entry.reason != REFUSED and (  # refusals: checked again (policy, DNS)
                    entry.ok or not (run.s.retry_dead and _transient(entry.reason))):
                run.settle(entry, from_cache=True)
                continue
            if entry is None and await run.recover(url):
                continue
            await window.acquire()
            if failures:
                window.release()
                break
            task = asyncio.create_task(run.fetch(url))
            tasks.add(task)
            task.add_done_callback(finished)
        while tasks and not failures:
            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    if failures:
        raise failures[0]


async def afetch_images(
    urls: Iterable[str],
    cache: ImageCache | str | os.PathLike[str],
    *,
    concurrency: int = 64,
    per_host: int = 4,
    min_interval: float = 0.0,
    timeout: float = 20.0,
    deadline: float = 120.0,
    max_bytes: int = 32 * 1024 * 1024,
    max_pixels: int | None = None,
    retries: int = 3,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    max_retry_after: float = 300.0,
    max_redirects: int = 5,
    retry_dead: bool = False,
    allow_private_addresses: bool = False,
    allow_servers: Iterable[str] = (),
    rng: random.Random | None = None,
    decode_workers: int | None = None,
    user_agent: str | None = None,
    progress: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FetchReport:
    """The coroutine behind :func:`fetch_images` (for callers already inside an event loop).

    ``cache`` is a folder or an :class:`ImageCache`; a cache opened here is closed here, one the
    caller opened stays open. The client closes ``transport`` when it is done.
    """
    for name, value, low in (("concurrency", concurrency, 1), ("per_host", per_host, 1), ("retries", retries, 0),
                             ("max_bytes", max_bytes, 1), ("max_redirects", max_redirects, 0)):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    for name, seconds in (("timeout", timeout), ("deadline", deadline)):
        if not seconds > 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {seconds}")
    policy = AddressPolicy.of(allow_private=allow_private_addresses, allow_servers=allow_servers)
    s = _Settings(concurrency, per_host, min_interval, timeout, deadline, max_bytes, max_pixels, retries,
                  backoff, max_backoff, max_retry_after, retry_dead)
    unique = list(dict.fromkeys(urls))
    report = FetchReport(total=len(unique))
    store = cache if isinstance(cache, ImageCache) else ImageCache(cache)
    opened_here = not store.is_open
    store.open()
    started = time.monotonic()
    try:
        hooks: dict[str, list[Any]] = {}
        if transport is None and not urllib.request.getproxies():  # env proxies: left to httpx's own routing
            transport = default_transport(concurrency, policy=policy)
        elif transport is None:  # the proxy resolves the names: check each hop here, nothing can be pinned
            hooks["request"] = [policy.check_request]
        client = httpx.AsyncClient(
            event_hooks=hooks,
            transport=transport,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=True, max_redirects=max_redirects, timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent or f"finer-datasets/{__version__} (research dataset builder)",
                     "Accept": _ACCEPT})
        workers = decode_workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers, thread_name_prefix="fetch-check") as pool, \
                tqdm(total=len(unique), unit="img", desc="fetch images", disable=None if progress else True) as bar:
            async with client:
                await _run_all(_Run(s, client, store, rng or random.Random(0), pool, report, bar), unique)
    finally:
        report.elapsed_s = time.monotonic() - started
        if opened_here:
            store.close()
    logger.info("fetch: %s", report.summary())
    return report


def fetch_images(urls: Iterable[str], cache: ImageCache | str | os.PathLike[str], **options: object) -> FetchReport:
    """Download, verify and cache every URL in ``urls``; a bad URL is counted, never raised.

    Guarantees: at most ``concurrency`` requests in flight overall and ``per_host`` per host (starts
    at least ``min_interval`` s apart per host); 429/408/5xx, timeouts and broken connections are
    retried up to ``retries`` times with exponential backoff and jitter from ``rng`` (a ``429``'s
    ``Retry-After`` pauses its host; one above ``max_retry_after`` s ends the URL); other 4xx are
    final. Bodies are streamed and abandoned past ``max_bytes`` (``too_large``); each body is fully
    decoded with Pillow (``not_an_image`` / ``corrupt`` / ``too_many_pixels``, see
    :mod:`finer_datasets.fetch.verify`) before it is stored. URLs already settled in the cache are
    not requested again (dead ones neither, unless ``retry_dead`` and their reason is transient).

    Time: ``timeout`` bounds each connect and each wait for the next bytes; ``deadline`` bounds a
    whole attempt (connect, first byte, redirects and the last byte of the body), so a server that
    drips its body holds a slot for at most ``deadline`` seconds (``timeout``, then retried).

    Addresses (:mod:`finer_datasets.fetch.address`): a URL or redirect whose host resolves to a
    loopback, link-local (cloud metadata), private, multicast, reserved or unspecified address is
    ``dead`` with the reason ``private_address``, without a request; ``allow_private_addresses``
    turns the check off (local mirrors), ``allow_servers`` (``"IP:PORT"``) lets exactly those
    servers through. ``transport`` replaces the network, this check included (tests; the default
    is :func:`~finer_datasets.fetch.transport.default_transport`, which applies it; through an
    environment proxy each hop's host is checked before it is sent). Options are those of
    :func:`afetch_images`.
    """
    return run_async(afetch_images(urls, cache, **options))  # type: ignore[arg-type]
