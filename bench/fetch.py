"""Image fetch throughput against the local image server, as a ratio measured in one run.

    python bench/fetch.py                          # 2,000 64x64 JPEGs, 50 ms latency, concurrency 64
    python bench/fetch.py --n 500 --latency 0.2    # slower "hosts"

It writes ``--n`` distinct JPEGs (random noise, so every file and hash differs), serves them from
a separate process (:func:`finer_datasets.testing.image_server.serve`, ``--latency`` seconds added
to every request) under ``--hosts`` host names (``h<i>.test``, sent to 127.0.0.1 by
``LoopbackTransport``), then fetches every URL twice, alternating ``--repeat`` times:

* ``fetch_images`` into an empty cache: per-host limit, retries, full Pillow decode, sha256,
  atomic file + index row per image (its default transport: hosts spread over small pools);
* a trivial httpx client, same concurrency: one ``AsyncClient``, GET and read the body, nothing else;
* the same trivial client on ``fetch_images``' pool layout (``default_transport``), which isolates
  the cost of the checks and the cache from the cost of httpcore's pool bookkeeping.

Printed: images/s for each, ours / trivial (medians), and the wall time this rate would give for
57,000 images. The server is the same for all, so the ratios measure client-side cost; the
absolute rate on real hosts is set by their latency and the per-host limit.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from finer_datasets.fetch import AddressPolicy, default_transport, fetch_images
from finer_datasets.testing.image_server import LoopbackTransport, serve


LOCAL = AddressPolicy(allow_private=True)  # the local image server is on 127.0.0.1


def make_images(folder: Path, n: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        pixels = rng.randbytes(size * size * 3)
        Image.frombytes("RGB", (size, size), pixels).save(folder / f"img{i:05d}.jpg", quality=90)


async def trivial(urls: list[str], concurrency: int, *, pooled: bool) -> int:
    """GET every URL with at most ``concurrency`` in flight; returns the number of 200 responses."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = default_transport(concurrency, wrap=LoopbackTransport, policy=LOCAL) if pooled else \
        LoopbackTransport(httpx.AsyncHTTPTransport(limits=limits))

    async with httpx.AsyncClient(transport=transport) as client:
        async def one(url: str) -> bool:
            async with gate:
                response = await client.get(url)
                return response.status_code == 200 and bool(response.content)

        return sum(await asyncio.gather(*(one(u) for u in urls)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="images to fetch (default 2000)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to each request (default 0.05)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-host", type=int, default=4)
    parser.add_argument("--hosts", type=int, default=64, help="distinct host names (default 64)")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the two clients N times; medians")
    parser.add_argument("--target", type=float, default=100.0, help="images/s to reach (default 100)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    server = None
    try:
        (work / "images").mkdir()
        make_images(work / "images", args.n, args.size, seed=0)
        ready: multiprocessing.Queue = multiprocessing.Queue()
        server = multiprocessing.Process(target=serve, args=(work / "images",),
                                         kwargs={"latency": args.latency, "ready": ready}, daemon=True)
        server.start()
        port = ready.get(timeout=60)
        urls = [f"http://h{i % args.hosts}.test:{port}/files/img{i:05d}.jpg" for i in range(args.n)]
        ours, base, pooled = [], [], []
        for r in range(args.repeat):
            for rates, layout in ((base, False), (pooled, True)):
                started = time.perf_counter()
                got = asyncio.run(trivial(urls, args.concurrency, pooled=layout))
                rates.append(got / (time.perf_counter() - started))
                if got != args.n:
                    print(f"error: the trivial client fetched {got} of {args.n}", file=sys.stderr)
                    return 1
            cache = work / f"cache{r}"
            report = fetch_images(urls, cache, concurrency=args.concurrency, per_host=args.per_host,
                                  transport=default_transport(args.concurrency, wrap=LoopbackTransport, policy=LOCAL),
                                  progress=False)
            if report.ok != args.n:
                print(f"error: fetch_images fetched {report.ok} of {args.n}: {report.summary()}", file=sys.stderr)
                return 1
            ours.append(report.images_per_s)
            shutil.rmtree(cache)
    finally:
        if server is not None:
            server.terminate()
            server.join()
        shutil.rmtree(work, ignore_errors=True)

    rate, base_rate, pooled_rate = statistics.median(ours), statistics.median(base), statistics.median(pooled)
    print(f"images: {args.n} x {args.size}x{args.size} JPEG, {args.hosts} hosts, latency {args.latency * 1000:.0f} ms, "
          f"concurrency {args.concurrency}, per-host {args.per_host}, repeat {args.repeat}")
    print(f"fetch_images (checked + cached): {rate:8.1f} images/s")
    print(f"trivial httpx client:            {base_rate:8.1f} images/s")
    print(f"trivial client, our pool layout: {pooled_rate:8.1f} images/s")
    print(f"RATIO ours / trivial: {rate / base_rate:.2f}")
    print(f"RATIO ours / trivial on the same pools (cost of checks + cache): {rate / pooled_rate:.2f}")
    print(f"estimated wall time for 57,000 images at this rate: {57000 / rate / 60:.1f} min")
    print(f"target >= {args.target:.0f} images/s: {'met' if rate >= args.target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
