"""Shard writing through webdataset and streaming the views, as ratios measured in one run.

    python bench/stream.py                     # 2,000 synthetic images, shards of 250
    python bench/stream.py --images 5000 --shard-samples 500 --workers 2

It builds bench/build.py's synthetic CompreCap source, then prints, each measured in this run:

* WRITE: ``ShardWriter`` (webdataset's TarWriter + sha256, background thread) / a plain ``tarfile``
  write of the same members, both from memory                                  target <= 1.5
* STREAM: ``stream_finer(folder, "questions")`` rows/s against ``load_finer(..., streaming=True)``
  (datasets' streaming view), each image fully decoded once per sample          target >= 1
* LOADER: the same stream through a ``DataLoader`` with ``--workers`` workers, rows/s, with images as
  bytes and decoded (a decoded image is pickled as raw pixels for every row that crosses to the
  main process: decode, or better preprocess with ``.map()``, in the workers)
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from build import make_source, read_members  # noqa: E402  (bench/build.py)

from finer_datasets import build, get_builder, load_finer, stream_finer  # noqa: E402
from finer_datasets.core.shards import ShardWriter  # noqa: E402


def write_ours(members: list[list[tuple[str, bytes]]], out: Path) -> float:
    start = time.perf_counter()
    writer = ShardWriter(out, "test", max_samples=10**9, background=True)
    for shard in members:
        sample: dict[str, bytes] = {}
        for name, data in shard:
            key, _, extension = name.partition(".")
            if sample and sample["__key__"] != key:
                writer.write(sample.pop("__key__"), sample)
                sample = {}
            sample["__key__"], sample[extension] = key, data
        writer.write(sample.pop("__key__"), sample)
    writer.close()
    return time.perf_counter() - start


def write_plain(members: list[list[tuple[str, bytes]]], out: Path) -> float:
    start = time.perf_counter()
    with tarfile.open(out / "plain.tar", "w") as tar:
        for shard in members:
            for name, data in shard:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return time.perf_counter() - start


def rows_per_second(rows, image_key: str = "image") -> tuple[int, float]:
    start, n, last = time.perf_counter(), 0, None
    for row in rows:
        image = row[image_key]
        if image is not last:  # one full decode per sample (the stream shares it among its rows)
            image.load()
            last = image
        n += 1
    return n, n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--shard-samples", type=int, default=250)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="median of N runs of each measurement")
    args = p.parse_args(argv)
    import datasets
    import torch

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="finer-bench-stream-"))
    try:
        make_source(work / "source", args.images, (320, 240))
        out = build(get_builder("compre_cap"), source=work / "source", out=work / "out", max_samples=args.shard_samples,
                    progress=False).out
        members = read_members(sorted(out.glob("data/*.tar")))
        mb = sum(len(d) for shard in members for _, d in shard) / 1e6
        ours, plain = [], []
        for r in range(args.repeat):
            (work / f"w{r}").mkdir()
            ours.append(write_ours(members, work / f"w{r}"))
            plain.append(write_plain(members, work / f"w{r}"))
            shutil.rmtree(work / f"w{r}")
        o, pl = statistics.median(ours), statistics.median(plain)
        print(f"WRITE {mb:.0f} MB: ShardWriter {o:.2f}s ({mb / o:.0f} MB/s) / plain tarfile {pl:.2f}s ({mb / pl:.0f} MB/s)"
              f" = {o / pl:.2f}  (target <= 1.5)")
        streamed = [rows_per_second(stream_finer(out, "questions", split="test")) for _ in range(args.repeat)]
        hf = [rows_per_second(load_finer(str(out), "questions", split="test", streaming=True)) for _ in range(args.repeat)]
        n, s = streamed[0][0], statistics.median(r for _, r in streamed)
        h = statistics.median(r for _, r in hf)
        print(f"STREAM {n} questions: stream_finer {s:,.0f} rows/s / load_finer(streaming=True) {h:,.0f} rows/s = "
              f"{s / h:.1f}  (target >= 1)")
        for decode in (False, True):  # a decoded image crosses to the main process as raw pixels, once per row
            loader = torch.utils.data.DataLoader(stream_finer(out, "questions", split="test", decode=decode),
                                                 batch_size=None, num_workers=args.workers)
            start = time.perf_counter()
            count = sum(1 for _ in loader)
            print(f"LOADER {count} questions through {args.workers} DataLoader workers, decode={decode}: "
                  f"{count / (time.perf_counter() - start):,.0f} rows/s (worker start-up included)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
