"""FINER-Tuning builder throughput: fetch, LLM stage and the whole build, measured in one run.

    python bench/tuning.py                                  # 1,000 images, LLM latency 200 ms, concurrency 64
    python bench/tuning.py --n 2000 --llm-concurrency 128 --image-size 512

It writes ``--n`` distinct JPEGs (random noise, ``--image-size`` px wide) and a Pixmo-like Parquet
file whose captions the scripted model understands, then runs, with every server in its own
process (so no server shares the builder's interpreter lock):

1. **fetch** -- the builder's image step (``fetch_outcomes``: ``finer_datasets.fetch`` with its
   per-host limit, retries, full decode, sha256 and resumable cache, plus the stored files) against
   ``finer_datasets.testing.image_server`` (``--image-latency`` per request) under ``--hosts``
   host names; printed: images fetched and checked per second;
2. **LLM stage** -- the builder's stage (6 prompts per image, pipelined) against the scripted
   OpenAI-compatible server answering each request after ``--llm-latency`` seconds; the server
   samples its requests in flight every 5 ms. Printed: images/s, the mean number of requests in
   flight over the stage divided by ``--llm-concurrency`` (1.0 = the concurrency is always full)
   and the rate divided by its ideal, concurrency / (6 x latency);
3. **build** -- ``finer build`` of the same source end to end from the image cache and the
   transcript (no network, no model): records, image checks, validation, shards, manifest.

The estimate for the paper's 57,000 images adds the three phases at the measured rates.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

PAPER_IMAGES = 57_000
PROMPTS_PER_IMAGE = 6


def make_source(work: Path, n: int, size: int, hosts: int, seed: int) -> Path:
    """``n`` noise JPEGs under work/images and one Parquet file under work/source with their URLs."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from finer_datasets.builders.tuning.maintenance.make_sample import BACKGROUNDS, caption, scene
    from finer_datasets.builders.tuning.scripted import PARTS

    rng = random.Random(seed)
    (work / "images").mkdir(parents=True)
    rows = []
    height = size * 3 // 4
    for i in range(n):
        name = f"img{i:06d}.jpg"
        Image.frombytes("RGB", (size, height), rng.randbytes(size * height * 3)).save(work / "images" / name, quality=90)
        text = caption(scene(rng, PARTS), rng.choice(list(BACKGROUNDS)), rng)
        rows.append({"image_url": f"https://h{i % hosts}.bench.test/files/{name}", "caption": text})
    (work / "source").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), work / "source" / "train-00000-of-00001.parquet")
    return work / "source"


def serve_llm(latency: float, conn, port: int = 0) -> None:  # noqa: ANN001 - a multiprocessing Connection
    """The scripted LLM in this process; reports its URL, then, on request, in-flight statistics.

    Several such processes share one port (``SO_REUSEPORT``: the kernel spreads the connections),
    so that the stand-in model is not what limits the client."""
    from finer_datasets.builders.tuning import scripted
    from finer_datasets.testing import scripted as stand_in

    stand_in._Server.allow_reuse_port = True  # this benchmark process only
    server = stand_in.ScriptedServer(stand_in.ScriptedLLM(handlers=[scripted.answer]), delay=latency, port=port)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(server.in_flight)
            time.sleep(0.005)

    with server:
        conn.send(server.url)
        while (message := conn.recv()) != "quit":
            if message == "start":
                samples.clear()
                server.peak_in_flight = 0
                stop.clear()
                threading.Thread(target=sample, daemon=True).start()
            elif message == "stop":
                stop.set()
                busy = samples[next((i for i, s in enumerate(samples) if s), 0):]
                while busy and busy[-1] == 0:
                    busy.pop()
                conn.send({"mean_in_flight": statistics.fmean(busy) if busy else 0.0,
                           "peak_in_flight": server.peak_in_flight, "requests": server.requests})


class InProcessModel:
    """A stand-in for the stage's ChatClient without HTTP: each ask holds one of ``concurrency``
    slots for ``latency`` seconds, then the scripted model answers. It measures the stage's own
    pipelining (the time-weighted mean of slots in use), apart from any transport or server cost."""

    def __init__(self, concurrency: int, latency: float):
        from finer_datasets.builders.tuning import scripted
        from finer_datasets.testing.scripted import ScriptedLLM

        self.llm = ScriptedLLM(handlers=[scripted.answer])
        self.concurrency, self.latency = concurrency, latency
        self.busy = self.area = 0.0
        self.first = self.last = None

    def _tick(self, change: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = self.last = now
        self.area += self.busy * (now - self.last)
        self.busy += change
        self.last = now

    def run(self, coroutine):  # noqa: ANN001, ANN201
        import asyncio

        self.gate = None
        return asyncio.run(coroutine)

    async def ask(self, messages, parse, *, purpose: str = "", **_: object):  # noqa: ANN001, ANN201
        import asyncio

        if self.gate is None:
            self.gate = asyncio.Semaphore(self.concurrency)
        async with self.gate:
            self._tick(+1)
            await asyncio.sleep(self.latency)
            self._tick(-1)
        return parse(self.llm.respond({"messages": messages}))[0]

    @property
    def utilization(self) -> float:
        return self.area / (self.last - self.first) / self.concurrency if self.last != self.first else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images (default 1000)")
    parser.add_argument("--image-size", type=int, default=256, help="image width in pixels (default 256)")
    parser.add_argument("--image-latency", type=float, default=0.05, help="seconds per image request (default 0.05)")
    parser.add_argument("--hosts", type=int, default=64, help="image host names (default 64)")
    parser.add_argument("--fetch-concurrency", type=int, default=64)
    parser.add_argument("--fetch-per-host", type=int, default=4)
    parser.add_argument("--llm-latency", type=float, default=0.2, help="seconds per LLM answer (default 0.2)")
    parser.add_argument("--llm-concurrency", type=int, default=64, help="LLM requests in flight (default 64)")
    parser.add_argument("--llm-servers", type=int, default=2, help="scripted LLM server processes (default 2)")
    parser.add_argument("--target", type=float, default=100.0, help="images/s the fetch must reach (default 100)")
    args = parser.parse_args(argv)

    from finer_datasets.builders.tuning.images import fetch_outcomes
    from finer_datasets.builders.tuning.source import read_rows
    from finer_datasets.core.build import build
    from finer_datasets.core.builder import BuildReport
    from finer_datasets.core.registry import get_builder
    from finer_datasets.llm import LLMConfig, LLMRun, PromptSet, TranscriptStore
    from finer_datasets.testing.image_server import serve

    work = Path(tempfile.mkdtemp(prefix="bench-tuning-"))
    processes = []
    try:
        source = make_source(work, args.n, args.image_size, args.hosts, seed=0)
        ready: multiprocessing.Queue = multiprocessing.Queue()
        image_server = multiprocessing.Process(target=serve, args=(work / "images",),
                                               kwargs={"latency": args.image_latency, "ready": ready}, daemon=True)
        image_server.start()
        processes.append(image_server)
        pipes, url = [], ""
        for i in range(args.llm_servers):
            ours, theirs = multiprocessing.Pipe()
            llm_port = int(url.rsplit(":", 1)[1].split("/")[0]) if url else 0
            server = multiprocessing.Process(target=serve_llm, args=(args.llm_latency, theirs, llm_port), daemon=True)
            server.start()
            processes.append(server)
            pipes.append(ours)
            url = ours.recv()
        port = ready.get(timeout=60)
        rewrite = (r"^https://h\d+\.bench\.test/", f"http://127.0.0.1:{port}/")
        builder = get_builder("tuning")
        rows = read_rows(source, BuildReport())
        cache = work / "cache"

        started = time.perf_counter()
        local = [f"127.0.0.1:{port}"]  # the image server: the one private address allowed
        outcomes, report = fetch_outcomes(rows, cache, url_rewrite=rewrite, concurrency=args.fetch_concurrency,
                                          per_host=args.fetch_per_host, allow_servers=local, progress=False)
        fetch_s = time.perf_counter() - started
        usable = sum(o.ok for o in outcomes.values())
        if usable != args.n:
            print(f"error: {usable} of {args.n} images usable: {report.summary()}", file=sys.stderr)
            return 1

        transcript = work / "transcript.sqlite"
        config = LLMConfig(base_url=url, model="scripted", api_key_env="", concurrency=args.llm_concurrency,
                           backoff=0.05, timeout=60)
        run = LLMRun.create(TranscriptStore(transcript), llm=config, stages=dict(builder.llm_stages),
                            prompts=PromptSet.for_builder(builder.prompts_dir()))
        from finer_datasets.builders.tuning.stage import TuningPhrases

        model = InProcessModel(args.llm_concurrency, args.llm_latency)
        started = time.perf_counter()
        TuningPhrases(model, run.prompts).run(rows, 0)
        inproc_s = time.perf_counter() - started

        for pipe in pipes:
            pipe.send("start")
        started, cpu = time.perf_counter(), time.process_time()
        answers = run.stage("phrases").run(rows, 0)
        llm_s, llm_cpu = time.perf_counter() - started, time.process_time() - cpu
        for pipe in pipes:
            pipe.send("stop")
        parts = [pipe.recv() for pipe in pipes]
        stats = {"mean_in_flight": sum(p["mean_in_flight"] for p in parts),
                 "peak_in_flight": "+".join(str(p["peak_in_flight"]) for p in parts),
                 "requests": sum(p["requests"] for p in parts)}
        complete = sum(1 for a in answers.values() if not a.problems)
        run.store.close()

        replay = LLMRun.replay(transcript, stages=builder.llm_stages, prompts=PromptSet.for_builder(builder.prompts_dir()))
        started = time.perf_counter()
        result = build(builder, source=source, out=work / "out", llm=replay, progress=False,
                       options={"image_cache": cache, "url_rewrite": rewrite, "allow_servers": local})
        build_s = time.perf_counter() - started
        for pipe in pipes:
            pipe.send("quit")
    finally:
        for p in processes:
            p.terminate()
            p.join()
        shutil.rmtree(work, ignore_errors=True)

    fetch_rate, llm_rate, build_rate = args.n / fetch_s, args.n / llm_s, args.n / build_s
    ideal = args.llm_concurrency / (PROMPTS_PER_IMAGE * args.llm_latency)
    print(f"images: {args.n} x {args.image_size}x{args.image_size * 3 // 4} JPEG on {args.hosts} hosts "
          f"(latency {args.image_latency * 1000:.0f} ms, concurrency {args.fetch_concurrency}, per host "
          f"{args.fetch_per_host}); LLM latency {args.llm_latency * 1000:.0f} ms, concurrency {args.llm_concurrency}")
    print(f"fetch + check + store:   {fetch_rate:8.1f} images/s  ({report.summary()})")
    print(f"LLM stage:               {llm_rate:8.1f} images/s  ({stats['requests']} requests, {complete} images with "
          f"every answer usable, peak {stats['peak_in_flight']} in flight in {args.llm_servers} server processes)")
    print(f"build from cache+replay: {build_rate:8.1f} images/s  ({result.manifest['counts']['records']} tuples; "
          f"prepare {result.timings.get('prepare', 0):.1f} s, total {result.timings.get('total', 0):.1f} s)")
    print(f"LLM stage, in-process:   {args.n / inproc_s:8.1f} images/s  (no HTTP: the stage's own scheduling)")
    print(f"client CPU per LLM request: {1000 * llm_cpu / max(1, stats['requests']):.2f} ms "
          f"(one core would sustain {stats['requests'] / max(llm_cpu, 1e-9):.0f} requests/s)")
    print(f"RATIO stage slots in use / concurrency, in-process model: {model.utilization:.2f}")
    print(f"RATIO LLM mean in flight / concurrency, over HTTP: {stats['mean_in_flight'] / args.llm_concurrency:.2f}")
    print(f"RATIO LLM images/s / ideal (concurrency / ({PROMPTS_PER_IMAGE} x latency) = {ideal:.1f}): "
          f"{llm_rate / ideal:.2f}")
    total = PAPER_IMAGES / fetch_rate + PAPER_IMAGES / llm_rate + PAPER_IMAGES / build_rate
    print(f"estimated wall time for {PAPER_IMAGES:,} images: {total / 60:.1f} min (fetch {PAPER_IMAGES / fetch_rate / 60:.1f}"
          f" + LLM {PAPER_IMAGES / llm_rate / 60:.1f} + build {PAPER_IMAGES / build_rate / 60:.1f})")
    print(f"fetch target >= {args.target:.0f} images/s: {'met' if fetch_rate >= args.target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
