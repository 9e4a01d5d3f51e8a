"""LLM/MLLM build throughput against the scripted server with latency, as a ratio measured in one run.

    python bench/llm_build.py                                  # FINER-DOCCI, 120 drawn images, 200 ms, 64 + 64
    python bench/llm_build.py --dataset compre_cap             # the CompreCap sample (12 images)
    python bench/llm_build.py --latency 0.1 --llm-concurrency 32 --mllm-concurrency 16

One scripted server (``finer_datasets.testing.scripted.ScriptedServer`` with the builder's
scripted handlers, ``--latency`` seconds added to every answer) runs in a separate process, so
``time.process_time`` of this process is the client's CPU alone. Against it, in one run:

1. **capacity**: a trivial client -- one pooled ``httpx.AsyncClient``, ``--capacity-concurrency``
   requests in flight (default: ``--llm-concurrency``), a one-line prompt, nothing else -- sends
   ``--capacity-requests`` requests before the pipeline and as many after it (the load of a shared
   machine drifts); their combined rate is what the server can answer;
2. **pipeline**: a full build with every model stage of the builder (FINER-DOCCI: extraction,
   relations, validation, negatives with the MLLM entropy filter, Wh; CompreCap: rewrite,
   negatives, Wh), ``--llm-concurrency`` / ``--mllm-concurrency`` per endpoint, into a fresh
   transcript (nothing is answered from a cache).

Printed: requests on the wire, the pipeline's sustained requests/s over its model phases
(``read_source`` + ``prepare``: all model calls happen there) and over the whole build, the
capacity, their ratio (target >= 0.8) and the client CPU per request over the whole build,
reading, decoding and shard writing included (target <= 2 ms); then the same build is replayed
from its transcript, and the CPU difference per request is what the wire itself costs (compare
with the trivial client's CPU per request). The ratio is below 1 where a phase has fewer requests
ready than slots (the tail of each stage, the regeneration rounds of the entropy filter: a fixed
cost, so more ``--images`` raise it), and can exceed it where both endpoints' slots are busy at
once. On a small shared machine the server competes with the client for CPU; rerun to see the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # builders.docci.maintenance (the scene drawer)


def _serve(queue: multiprocessing.Queue[str], dataset: str, latency: float) -> None:
    from finer_datasets.core.registry import get_builder
    from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

    server = ScriptedServer(ScriptedLLM(handlers=get_builder(dataset).scripted_handlers()), delay=latency)
    queue.put(server.url)
    server.serve_forever()


async def _trivial(url: str, n: int, concurrency: int) -> tuple[int, float, float]:
    """``n`` one-line chat requests with ``concurrency`` in flight: (answered, seconds, CPU seconds)."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    payload = {"model": "scripted", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one() -> bool:
            async with gate:
                r = await client.post(f"{url}/chat/completions", json=payload)
                return r.status_code == 200

        t, cpu = time.perf_counter(), time.process_time()
        ok = sum(await asyncio.gather(*(one() for _ in range(n))))
        return ok, time.perf_counter() - t, time.process_time() - cpu


def _source(dataset: str, work: Path, images: int) -> Path:
    from finer_datasets.core.registry import get_builder

    if dataset != "docci":
        return get_builder(dataset).sample_dir()
    from builders.docci.maintenance.make_sample import make_source

    make_source(work / "source", count=images, size=(160, 120))
    return work / "source"


def _pipeline(dataset: str, url: str, source: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """A recording build against the server, then a replay of its transcript (no wire): the
    difference of their CPU times is what the requests themselves cost the client."""
    from finer_datasets.core.build import build
    from finer_datasets.core.registry import get_builder
    from finer_datasets.llm import (
        LLMConfig,
        LLMRun,
        PromptSet,
        Thresholds,
        TranscriptStore,
    )

    builder = get_builder(dataset)
    prompts = PromptSet.for_builder(builder.prompts_dir())
    from finer_datasets.core.card import sample_features

    sample_features(builder.record_schema, ("jpg",))  # import `datasets` now: its import is not a request's cost

    def config(model: str, concurrency: int) -> LLMConfig:
        return LLMConfig(base_url=url, model=model, api_key_env="", concurrency=concurrency, timeout=120)

    run = LLMRun.create(TranscriptStore(work / "transcript.sqlite"), llm=config("scripted", args.llm_concurrency),
                        mllm=config("scripted-vl", args.mllm_concurrency), stages=dict(builder.llm_stages),
                        prompts=prompts, thresholds=Thresholds(**builder.entropy_thresholds))
    cpu, wall = time.process_time(), time.perf_counter()
    result = build(builder, source=source, out=work / "out", llm=run, progress=not args.no_progress)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    live = run.live()
    model = result.timings.get("read_source", 0.0) + result.timings.get("prepare", 0.0)
    replay = LLMRun.replay(work / "out" / "transcript.jsonl", stages=dict(builder.llm_stages), prompts=prompts)
    replay_cpu = time.process_time()
    build(builder, source=source, out=work / "replayed", llm=replay, progress=False)
    replay_cpu = time.process_time() - replay_cpu
    return {"requests": live.get("http_requests", 0), "answered": live.get("answered", 0), "wall": wall,
            "model_wall": model, "cpu": cpu, "replay_cpu": replay_cpu,
            "read_source": result.timings.get("read_source", 0.0), "prepare": result.timings.get("prepare", 0.0),
            "records": result.manifest["counts"].get("records", 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="docci", choices=("docci", "compre_cap"))
    parser.add_argument("--images", type=int, default=120, help="drawn images for docci (default 120)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server adds to each answer (0.2)")
    parser.add_argument("--llm-concurrency", type=int, default=64)
    parser.add_argument("--mllm-concurrency", type=int, default=64)
    parser.add_argument("--capacity-concurrency", type=int, default=None, help="default: --llm-concurrency")
    parser.add_argument("--capacity-requests", type=int, default=2000)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    capacity_concurrency = args.capacity_concurrency or args.llm_concurrency

    import finer_datasets.llm  # noqa: F401  # the client's process-wide settings apply to the trivial client too

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    server = ctx.Process(target=_serve, args=(queue, args.dataset, args.latency), daemon=True)
    server.start()
    try:
        url = queue.get(timeout=120)
        with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
            work = Path(tmp)
            source = _source(args.dataset, work, args.images)
            before = asyncio.run(_trivial(url, args.capacity_requests, capacity_concurrency))
            p = _pipeline(args.dataset, url, source, work, args)
            after = asyncio.run(_trivial(url, args.capacity_requests, capacity_concurrency))
    finally:
        server.terminate()
        server.join(10)
    ok, seconds, trivial_cpu = (before[i] + after[i] for i in range(3))
    capacity = ok / seconds  # measured before and after the pipeline: the machine's load drifts
    sustained, overall = p["requests"] / p["model_wall"], p["requests"] / p["wall"]
    cpu_ms = 1000 * p["cpu"] / max(1, p["requests"])
    ratio = sustained / capacity
    print(f"dataset {args.dataset}: latency {args.latency * 1000:.0f} ms, concurrency LLM {args.llm_concurrency} / "
          f"MLLM {args.mllm_concurrency} / trivial {capacity_concurrency}")
    print(f"capacity (trivial client, before and after): {ok} requests in {seconds:.1f} s = {capacity:.1f} requests/s "
          f"({before[0] / before[1]:.0f} and {after[0] / after[1]:.0f}; "
          f"{1000 * trivial_cpu / max(1, ok):.2f} ms of CPU per request)")
    print(f"pipeline: {p['requests']} requests ({p['answered']} answers), {p['records']} records; model phases "
          f"{p['model_wall']:.1f} s = {sustained:.1f} requests/s; "
          f"whole build {p['wall']:.1f} s = {overall:.1f} requests/s")
    print(f"  of which read_source {p['read_source']:.1f} s (a builder's own stages, e.g. DOCCI's extraction) and "
          f"prepare {p['prepare']:.1f} s (negatives, entropy filter, Wh)")
    print(f"ratio pipeline / capacity: {ratio:.2f} (target >= 0.8) {'OK' if ratio >= 0.8 else 'BELOW TARGET'}")
    wire_ms = 1000 * (p["cpu"] - p["replay_cpu"]) / max(1, p["requests"])
    print(f"client CPU: {p['cpu']:.2f} s = {cpu_ms:.2f} ms per request over the whole build (target <= 2 ms) "
          f"{'OK' if cpu_ms <= 2 else 'ABOVE TARGET'}; the same build replayed from its transcript: "
          f"{p['replay_cpu']:.2f} s, so the wire costs {wire_ms:.2f} ms per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
