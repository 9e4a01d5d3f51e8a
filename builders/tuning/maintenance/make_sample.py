"""Write the bundled sample (or the dummy data) of FINER-Tuning: Pixmo-cap-like Parquet + images.

    .venv/bin/python builders/tuning/maintenance/make_sample.py --which sample --out builders/tuning/sample
    .venv/bin/python builders/tuning/maintenance/make_sample.py --which dummy --out builders/tuning/dummy_data

Images are flat drawings of a few objects (seeded); each caption describes its drawing in the
small grammar the scripted model understands (``scripted.py``). URLs point at
``https://pixmo-sample.test/`` (a reserved test domain): test builds serve ``OUT/images`` with
``finer_datasets.testing.image_server`` and rewrite that prefix to it. Besides usable rows, the
sample holds one of each bad input the builder must count and skip: a dead URL, an HTML body, a
cut-off image, a missing caption, a blank URL, a duplicate URL, a COCO and a DOCCI URL, and a
caption without objects. Afterwards run ``record_transcript.py`` to re-record the transcript.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

PREFIX = "https://pixmo-sample.test/"
GROUND = ("ball", "box", "cup", "lamp", "book", "tree", "house", "car", "flower")
SKY = ("kite", "sun", "cloud")
RGB = {"red": (200, 40, 40), "blue": (40, 70, 200), "green": (40, 150, 60), "yellow": (230, 200, 40),
       "orange": (235, 130, 30), "purple": (130, 60, 160), "white": (245, 245, 245), "black": (25, 25, 25),
       "brown": (120, 75, 40), "gray": (128, 128, 128), "pink": (235, 140, 170)}
BACKGROUNDS = {"light blue": (200, 225, 245), "beige": (235, 225, 200), "pale green": (210, 235, 205)}


def scene(rng: random.Random, parts: dict) -> list[dict]:
    """2-4 ground objects left to right, sometimes one sky object; colours and parts drawn at random."""
    names = rng.sample(GROUND, rng.randint(2, 4)) + ([rng.choice(SKY)] if rng.random() < 0.4 else [])
    colors = [c for c in RGB if c not in ("white",)]
    return [{"name": n, "color": rng.choice(colors), "part": rng.choice(parts[n])} for n in names]


def caption(objects: list[dict], background: str, rng: random.Random) -> str:
    def article(word: str) -> str:
        return "an" if word[0] in "aeiou" else "a"

    text = [f"This picture is a simple flat drawing on a {background} background."]
    text += [f"There is {article(o['color'])} {o['color']} {o['name']} with {o['part']}." for o in objects]
    ground = [o for o in objects if o["name"] in GROUND]
    for left, right in zip(ground, ground[1:]):
        relation = rng.choice(("to the left of", "next to"))
        text.append(f"The {left['name']} is {relation} the {right['name']}.")
        if rng.random() < 0.5:
            text.append(f"The {right['name']} is to the right of the {left['name']}.")
    for sky in (o for o in objects if o["name"] in SKY):
        text.append(f"The {sky['name']} is above the {rng.choice(ground)['name']}.")
    text.append(rng.choice(("The drawing has a calm, playful mood.", "The colors are bright and the style is simple.")))
    return " ".join(text)


def draw(objects: list[dict], background: str, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, BACKGROUNDS[background])
    d = ImageDraw.Draw(img)
    ground = [o for o in objects if o["name"] in GROUND]
    slot = w // max(1, len(ground))
    for i, o in enumerate(ground):
        x0, x1, y1 = i * slot + 6, (i + 1) * slot - 6, h - 10
        y0, color = h // 2, RGB[o["color"]]
        if o["name"] in ("ball", "flower"):
            d.ellipse((x0, y1 - (x1 - x0), x1, y1), fill=color)
        elif o["name"] == "tree":
            d.rectangle(((x0 + x1) // 2 - 4, y0 + 20, (x0 + x1) // 2 + 4, y1), fill=RGB["brown"])
            d.polygon([(x0, y0 + 25), (x1, y0 + 25), ((x0 + x1) // 2, y0 - 25)], fill=color)
        elif o["name"] == "house":
            d.rectangle((x0, y0, x1, y1), fill=color)
            d.polygon([(x0 - 3, y0), (x1 + 3, y0), ((x0 + x1) // 2, y0 - 20)], fill=RGB["brown"])
        elif o["name"] == "car":
            d.rectangle((x0, y0 + 15, x1, y1 - 8), fill=color)
            for cx in (x0 + 8, x1 - 8):
                d.ellipse((cx - 6, y1 - 14, cx + 6, y1), fill=RGB["black"])
        else:
            d.rectangle((x0 + 4, y0 + 10, x1 - 4, y1), fill=color)
    for o in (o for o in objects if o["name"] in SKY):
        d.ellipse((w - 50, 8, w - 18, 40), fill=RGB[o["color"]])
    return img


def main(argv: list[str] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from finer_datasets.builders.tuning.scripted import PARTS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--which", choices=("sample", "dummy"), default="sample")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=20260321)
    args = ap.parse_args(argv)
    rng = random.Random(f"{args.seed}:{args.which}")
    images = args.out / "images"
    images.mkdir(parents=True, exist_ok=True)
    good = 30 if args.which == "sample" else 6
    rows: list[dict] = []
    for n in range(1, good + 1):
        suffix = "webp" if n == 7 and args.which == "sample" else "png" if n % 11 == 5 else "jpg"
        objects, background = scene(rng, PARTS), rng.choice(list(BACKGROUNDS))
        img = draw(objects, background, (160, 120))
        name = f"img{n:03d}.{suffix}"
        img.save(images / name, **({"quality": 85} if suffix == "jpg" else {}))
        text = caption(objects, background, rng)
        rows.append({"image_url": f"{PREFIX}files/{name}", "caption": text, "transcripts": [text.lower()]})
    bad = [{"image_url": f"{PREFIX}status/404", "caption": rows[0]["caption"]}]
    if args.which == "sample":
        draw(scene(rng, PARTS), "beige", (160, 120)).save(images / "img031.jpg", quality=85)
        bad += [
            {"image_url": f"{PREFIX}files/img031.jpg",
             "caption": "A screenshot of the settings page of a phone app, with a list of toggles and gray text."},
            {"image_url": f"{PREFIX}html", "caption": rows[1]["caption"]},
            {"image_url": f"{PREFIX}cut/img002.jpg", "caption": rows[1]["caption"]},
            {"image_url": f"{PREFIX}files/img003.jpg?copy=2", "caption": None},
            {"image_url": "", "caption": rows[2]["caption"]},
            {"image_url": rows[0]["image_url"], "caption": rows[0]["caption"]},
            {"image_url": "http://images.cocodataset.org/train2017/000000000139.jpg", "caption": rows[3]["caption"]},
            {"image_url": "https://storage.googleapis.com/docci/data/images/train_00012.jpg", "caption": rows[4]["caption"]},
        ]
    else:
        bad.append({"image_url": f"{PREFIX}files/img001.jpg?copy=2", "caption": None})
    rows += [{**b, "transcripts": []} for b in bad]
    schema = pa.schema([("image_url", pa.string()), ("caption", pa.string()), ("transcripts", pa.list_(pa.string()))])
    split = 22 if args.which == "sample" else len(rows)
    chunks = [rows[:split], rows[split:]] if split < len(rows) else [rows]
    for i, chunk in enumerate(chunks):
        path = args.out / "data" / f"train-{i:05d}-of-{len(chunks):05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), path)
    print(f"wrote {len(rows)} rows in {len(chunks)} file(s) and {len(list(images.iterdir()))} images under {args.out}")


if __name__ == "__main__":
    main()
