"""Build throughput at FINER-DOCCI scale, as ratios measured in one run.

    python bench/build.py                      # 5,000 images, ~70,000 pairs, 320x240 JPEGs
    python bench/build.py --images 500         # a quicker look
    python bench/build.py --image-size 640x480 # larger images (more bytes per pair)

It writes a synthetic CompreCap-format source (every image a distinct JPEG), builds it with
``finer_datasets.build``, then writes a plain tar of exactly the same members (same names and
bytes, read back beforehand, untimed) with the standard ``tarfile`` module, and prints

* build wall time / plain-tar wall time (target <= 1.5), and
* the share of build time spent in schema validation (target <= 10%).

Both runs write the same bytes to the same disk, one after the other, so the ratio is robust to
the machine's speed. ``--repeat N`` alternates N builds and N plain writes and reports medians.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import statistics
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


def plain_tar(shards: list[Path], out_dir: Path) -> float:
    """Seconds to write the members of ``shards`` again as plain tars (members read untimed)."""
    elapsed = 0.0
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
        start = time.perf_counter()
        with tarfile.open(out_dir / shard.name, "w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        elapsed += time.perf_counter() - start
    return elapsed


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
        builds, plains, validate_share = [], [], []
        for r in range(args.repeat):
            out = work / f"out{r}"
            start = time.perf_counter()
            result = build(builder, source=work / "source", out=out, seed=0, progress=False)
            builds.append(time.perf_counter() - start)
            validate_share.append(result.timings["validate"] / result.timings["total"])
            shards = sorted(out.glob("data/*.tar"))
            plain_dir = work / f"plain{r}"
            plain_dir.mkdir()
            plains.append(plain_tar(shards, plain_dir))
            shutil.rmtree(plain_dir)
            if r + 1 < args.repeat:
                shutil.rmtree(out)
        pairs = sum(result.manifest["counts"]["pairs"].values())
        size = sum(f["size"] for f in result.manifest["files"] if f["path"].startswith("data/"))
        timings = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
        build_s, plain_s = statistics.median(builds), statistics.median(plains)
        print(f"pairs: {pairs} ({', '.join(f'{s} {n}' for s, n in result.manifest['counts']['pairs'].items())})")
        print(f"shard bytes: {size / 1e9:.2f} GB")
        print(f"build: {build_s:.2f}s ({pairs / build_s:.0f} pairs/s); plain tar of the same bytes: {plain_s:.2f}s")
        print(f"build stages: {timings}")
        print(f"RATIO build / plain tar = {build_s / plain_s:.2f}  (target <= 1.5)")
        print(f"VALIDATION share of build time = {100 * statistics.median(validate_share):.1f}%  (target <= 10%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
