"""Build throughput and Hub bytes at FINER scale, as ratios measured in one run.

    python bench/build.py --images 2000        # the issue's figure (~31,000 pairs)
    python bench/build.py                      # 5,000 images, ~77,000 pairs
    python bench/build.py --image-size 640x480 # larger images

It writes a synthetic CompreCap-format source (every image a distinct JPEG), builds it with
``finer_datasets.build`` (one WebDataset sample per image: the image once + all its pairs), then
prints, each measured in this run on this disk:

* BYTES: shard bytes / (unique image bytes + record JSON bytes)            target <= 1.10
* BUILD: build wall / a plain ``tarfile`` write of the same members         target <= 1.5
  (members read beforehand, untimed), and the core's own share (validation + tar writing +
  card/manifest) against the same plain write, so the cost of the generic core is visible
  apart from the dataset-specific work (negatives, pairs, full image decodes);
* LOAD: first ``datasets.load_dataset(folder)`` (fresh cache) / raw tar iteration reading every
  member and decoding each JSON record                                      target <= 2
* VALIDATION share of build time                                            target <= 10%

``--repeat N`` alternates N builds and N plain writes and reports medians.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

from finer_datasets import build, get_builder

CATEGORIES = ["cat", "dog", "car", "tree", "house", "table", "chair", "cup", "book", "lamp", "ball", "box",
              "kite", "boat", "bird", "flower", "clock", "vase", "bench", "bicycle"]
COLORS = ["red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray"]
SIZES = ["small", "large"]
PATTERNS = ["striped", "dotted", "plain", "checkered"]
PREDICATES = ["on", "under", "next to", "behind", "in front of", "to the left of", "to the right of", "near"]


def make_source(root: Path, n_images: int, size: tuple[int, int], seed: int = 0) -> None:
    """A synthetic CompreCap source: 4 objects per image, 1-2 attributes, ~3 relations (~14 pairs)."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True)
    base = Image.effect_noise(size, 64).convert("RGB")
    anno = []
    for i in range(n_images):
        name = f"{i + 1:012d}.jpg"
        tint = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        Image.blend(base, tint, 0.3).save(images / name, quality=90)
        cats = rng.sample(CATEGORIES, 4)
        info = []
        for j, cat in enumerate(cats):
            extend = f"The {cat} is {rng.choice(PATTERNS)}." if rng.random() < 0.3 else ""
            relations = [f"The {cat} is {rng.choice(PREDICATES)} the {other}." for other in rng.sample(
                [c for c in cats if c != cat], rng.choice([0, 0, 1, 1, 2]))]
            info.append({
                "category": cat,
                "short_description": f"The {cat} is {rng.choice(COLORS)}.",
                "extend_description": extend,
                "mask_out": "eJwDAAAAAAE=",
                "relation": relations,
            })
        anno.append({"image": name, "info": info})
    (root / "anno.json").write_text(json.dumps(anno))


def read_members(shards: list[Path]) -> list[list[tuple[str, bytes]]]:
    out = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            out.append([(m.name, tar.extractfile(m).read()) for m in tar.getmembers()])
    return out


def plain_tar(members: list[list[tuple[str, bytes]]], out_dir: Path) -> float:
    """Seconds to write the same members again as plain tars."""
    start = time.perf_counter()
    for i, shard in enumerate(members):
        with tarfile.open(out_dir / f"{i:05d}.tar", "w") as tar:
            for name, data in shard:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return time.perf_counter() - start


def raw_iteration(shards: list[Path]) -> float:
    """Seconds to read every member of the shards and decode each JSON record."""
    start = time.perf_counter()
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                data = tar.extractfile(member).read()
                if member.name.endswith(".json"):
                    json.loads(data)
    return time.perf_counter() - start


LOAD = "import sys, time, datasets; datasets.disable_progress_bars(); t = time.perf_counter(); " \
       "ds = datasets.load_dataset(sys.argv[1], split='test'); print(time.perf_counter() - t, ds.num_rows)"


def first_load(folder: Path, cache: Path) -> float:
    """Seconds of the first ``load_dataset`` of ``folder`` in a fresh process with an empty cache."""
    env = {**os.environ, "HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets")}
    done = subprocess.run([sys.executable, "-c", LOAD, str(folder)], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000, help="number of source images (default 5000)")
    p.add_argument("--image-size", default="320x240", help="WxH of the synthetic JPEGs (default 320x240)")
    p.add_argument("--repeat", type=int, default=1, help="alternate N builds and N plain writes; report medians")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder, removed)")
    args = p.parse_args(argv)
    width, height = (int(x) for x in args.image_size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="finer-bench-", dir=args.work))
    try:
        t = time.perf_counter()
        make_source(work / "source", args.images, (width, height))
        print(f"synthetic source: {args.images} images {width}x{height} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        builder = get_builder("compre_cap")
        builds, plains, cores, shares = [], [], [], []
        for r in range(args.repeat):
            out = work / f"out{r}"
            start = time.perf_counter()
            result = build(builder, source=work / "source", out=out, seed=0, progress=False)
            builds.append(time.perf_counter() - start)
            timings = result.timings
            shares.append(timings["validate"] / timings["total"])
            cores.append(timings["validate"] + timings["write"] + timings["finish"])
            shards = sorted(out.glob("data/*.tar"))
            members = read_members(shards)
            plain_dir = work / f"plain{r}"
            plain_dir.mkdir()
            plains.append(plain_tar(members, plain_dir))
            shutil.rmtree(plain_dir)
            if r + 1 < args.repeat:
                shutil.rmtree(out)
        counts = result.manifest["counts"]
        shard_bytes = sum(f["size"] for f in result.manifest["files"] if f["path"].startswith("data/"))
        image_bytes = sum(len(d) for shard in members for n, d in shard if not n.endswith(".json"))
        json_bytes = sum(len(d) for shard in members for n, d in shard if n.endswith(".json"))
        build_s, plain_s, core_s = statistics.median(builds), statistics.median(plains), statistics.median(cores)
        raw_s = raw_iteration(shards)
        load_s = first_load(out, work / "hf-cache")
        pairs = counts["records"]
        print(f"pairs: {pairs} from {counts['images']} images ({', '.join(f'{s} {n}' for s, n in counts['pairs'].items())})")
        print(f"shard bytes {shard_bytes / 1e6:.1f} MB = images {image_bytes / 1e6:.1f} MB + records {json_bytes / 1e6:.1f} MB "
              f"+ tar {(shard_bytes - image_bytes - json_bytes) / 1e6:.1f} MB")
        print(f"build stages: {', '.join(f'{k} {v:.2f}s' for k, v in timings.items())}")
        print(f"BYTES shard / (unique images + record JSON) = {shard_bytes / (image_bytes + json_bytes):.3f}  (target <= 1.10)")
        print(f"BUILD wall / plain tar of the same bytes = {build_s:.2f}s / {plain_s:.2f}s = {build_s / plain_s:.1f}  "
              f"(target <= 1.5)")
        print(f"CORE (validate + write + card/manifest) / plain tar = {core_s:.2f}s / {plain_s:.2f}s = {core_s / plain_s:.2f}")
        print(f"LOAD first load_dataset / raw tar iteration = {load_s:.2f}s / {raw_s:.2f}s = {load_s / raw_s:.1f}  "
              "(target <= 2)")
        print(f"VALIDATION share of build time = {100 * statistics.median(shares):.1f}%  (target <= 10%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
