"""Being a polite client: per-host limits, backoff with jitter, ``Retry-After`` and fair ordering.

All of it is deterministic given its inputs: jitter comes from a ``random.Random`` the caller
passes in, and the clock is ``time.monotonic`` unless another is given.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator

import httpx

__all__ = ["HostGate", "backoff_delay", "host_of", "interleave_by_host", "parse_retry_after"]


def host_of(url: str) -> str | None:
    """The lower-cased host name of an http(s) URL, or None when ``url`` is not one."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    return parsed.host.lower()


def interleave_by_host(urls: Iterable[str]) -> Iterator[str]:
    """``urls`` reordered round-robin over their hosts (each host's own order kept).

    Fetching in this order keeps many hosts busy at once, so a run of URLs from one host in the
    input does not leave the global concurrency idle behind that host's limit. URLs that are not
    http(s) come first (they fail at once, without a request).
    """
    queues: OrderedDict[str | None, deque[str]] = OrderedDict()
    for url in urls:
        queues.setdefault(host_of(url), deque()).append(url)
    bad = queues.pop(None, deque())
    yield from bad
    while queues:
        for host in list(queues):
            queue = queues[host]
            yield queue.popleft()
            if not queue:
                del queues[host]


def backoff_delay(attempt: int, rng: random.Random, *, base: float, cap: float) -> float:
    """Exponential backoff with "equal jitter": uniform in [d/2, d] where d = min(cap, base * 2**attempt)."""
    delay = min(cap, base * (2 ** attempt))
    return delay / 2 + rng.random() * delay / 2


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now())


class _Host:
    __slots__ = ("lock", "next_start", "slots", "users")

    def __init__(self, per_host: int):
        self.slots = asyncio.Semaphore(per_host)
        self.next_start = 0.0
        self.lock = asyncio.Lock()
        self.users = 0  # requests holding or waiting for a slot


class HostGate:
    """At most ``per_host`` requests in flight per host, starts at least ``min_interval`` apart.

    ``async with gate.slot(host):`` waits for a free slot on ``host`` and then for the host's next
    allowed start time; :meth:`defer` pushes that time back (a ``429``'s ``Retry-After`` pauses
    the whole host, not only the URL that got it).
    """

    def __init__(self, per_host: int, min_interval: float = 0.0, *, clock: Callable[[], float] = time.monotonic):
        if per_host < 1:
            raise ValueError(f"per_host must be at least 1, got {per_host}")
        self.per_host, self.min_interval, self.clock = per_host, min_interval, clock
        self._hosts: dict[str, _Host] = {}
        self._sweep_at = 1024

    def __len__(self) -> int:
        """Hosts tracked now (idle hosts are forgotten from time to time, so this stays small)."""
        return len(self._hosts)

    def _get(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) >= self._sweep_at:
                self._sweep()
            state = self._hosts[host] = _Host(self.per_host)
        return state

    def _sweep(self) -> None:
        """Forget hosts nobody is using whose pause (``defer``, ``min_interval``) is over."""
        now = self.clock()
        for host in [h for h, st in self._hosts.items() if st.users == 0 and st.next_start <= now]:
            del self._hosts[host]
        self._sweep_at = max(1024, 2 * len(self._hosts))

    def defer(self, host: str, seconds: float) -> None:
        """No new request to ``host`` starts within ``seconds`` from now."""
        state = self._get(host)
        state.next_start = max(state.next_start, self.clock() + seconds)

    def slot(self, host: str) -> _Slot:
        return _Slot(self._get(host), self)


class _Slot:
    def __init__(self, state: _Host, gate: HostGate):
        self.state, self.gate = state, gate

    async def __aenter__(self) -> None:
        self.state.users += 1
        try:
            await self.state.slots.acquire()
        except BaseException:
            self.state.users -= 1
            raise
        try:
            async with self.state.lock:
                while True:  # next_start may move (defer) while we sleep
                    wait = self.state.next_start - self.gate.clock()
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                self.state.next_start = self.gate.clock() + self.gate.min_interval
        except BaseException:
            self.state.slots.release()
            self.state.users -= 1
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.state.slots.release()
        self.state.users -= 1
