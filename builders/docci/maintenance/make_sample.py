"""Draw small scenes and describe them in DOCCI's release format (our own images and captions).

Each image is drawn with Pillow from a laid-out scene (the shapes of the CompreCap sample's
drawer, ``builders/compre_cap/maintenance/make_sample.py``); the description is composed here in
DOCCI's style -- several sentences about the objects, their colours, sizes, patterns and parts,
and relations that are derived from the drawn masks, so every statement is true of the pixels.
A few sentences name two objects without relating them (so stage 2 also meets pairs with
nothing to extract). Deterministic: one ``random.Random`` per image, seeded by the image id.

Output: ``docci_descriptions.jsonlines`` (example_id, split, image_file, description) and
``images/<example_id>.jpg``; a few lines of the other DOCCI splits are added whose images are
*not* written (a build must never need them). Regenerate the checked-in folders with::

    .venv/bin/python builders/docci/maintenance/make_sample.py --out builders/docci/sample --count 24
    .venv/bin/python builders/docci/maintenance/make_sample.py --out builders/docci/dummy_data --count 3 --size 96x72

and then the sample's transcript with ``builders/docci/maintenance/record_transcript.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root, for the drawer

from builders.compre_cap.maintenance.make_sample import (
    BACKGROUNDS,
    PLURAL_PARTS,
    SPECS,
    draw_object,
    pick_attributes,
    relations,
)

__all__ = ["LAYOUTS", "make_source"]

Layout = tuple[str, list[tuple[str, float, float, float, float]]]
#: scene layouts (background, [(category, x0, y0, x1, y1) in drawing order]); jittered per image
LAYOUTS: list[Layout] = [
    ("outdoor", [("sun", .76, .06, .9, .25), ("house", .08, .22, .42, .76), ("tree", .5, .26, .68, .8),
                 ("car", .6, .66, .93, .88)]),
    ("indoor", [("window", .62, .07, .86, .38), ("table", .12, .5, .58, .86), ("cup", .18, .37, .28, .5),
                ("book", .34, .44, .52, .5), ("ball", .28, .73, .4, .86), ("chair", .66, .45, .88, .88)]),
    ("outdoor", [("cloud", .08, .07, .4, .24), ("tree", .14, .3, .4, .86), ("kite", .56, .08, .78, .5),
                 ("box", .62, .74, .74, .88)]),
    ("lake", [("sun", .07, .05, .21, .23), ("cloud", .55, .07, .86, .23), ("boat", .28, .47, .6, .72),
              ("bird", .66, .3, .78, .4)]),
    ("outdoor", [("cloud", .05, .05, .3, .2), ("house", .34, .2, .66, .72), ("tree", .72, .26, .92, .76),
                 ("fence", .02, .6, .3, .78), ("ball", .5, .8, .58, .9)]),
    ("indoor", [("table", .22, .5, .76, .88), ("lamp", .36, .17, .54, .5), ("book", .58, .43, .72, .5)]),
    ("indoor", [("window", .08, .07, .34, .4), ("chair", .06, .46, .3, .88), ("table", .38, .5, .82, .86),
                ("box", .46, .34, .62, .5), ("flower", .7, .3, .77, .5)]),
    ("outdoor", [("kite", .06, .06, .28, .42), ("bird", .74, .12, .85, .2), ("house", .55, .28, .9, .78),
                 ("tree", .2, .35, .42, .86), ("car", .28, .7, .62, .9)]),
    ("outdoor", [("sun", .08, .06, .25, .28), ("fence", .3, .6, .95, .78), ("flower", .45, .7, .52, .92),
                 ("tree", .04, .26, .28, .86)]),
    ("lake", [("cloud", .1, .06, .36, .2), ("boat", .14, .48, .5, .72), ("bird", .56, .24, .66, .32),
              ("sun", .8, .05, .94, .22)]),
]
_BACKDROP = {"outdoor": "The background shows a light blue sky above green grass.",
             "indoor": "The background is a beige wall above a brown floor.",
             "lake": "The background shows a light blue sky above blue water."}
_OPENING = {"outdoor": ("An outdoor view of", "A simple outdoor scene with", "A drawing of"),
            "indoor": ("An indoor view of", "A simple room with", "A drawing of"),
            "lake": ("A view of a lake with", "A simple lake scene with", "A drawing of")}
_FRONTABLE = ("to the left of", "to the right of", "next to", "beside", "near", "above", "below", "behind",
              "in front of")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _render(layout: Layout, W: int, H: int, rng: random.Random) -> tuple[Image.Image, list[dict[str, Any]]]:
    """The image and, per object, its category, attributes and true relations (from the masks)."""
    background, objects = layout
    img = Image.new("RGBA", (W, H))
    top = 0
    for colour, frac in BACKGROUNDS[background]:
        ImageDraw.Draw(img).rectangle((0, top, W, round(frac * H)), fill=colour)
        top = round(frac * H)
    dx = rng.uniform(-0.03, 0.03)
    cats, masks, attrs_all = [], [], []
    for cat, x0, y0, x1, y1 in objects:
        attrs = pick_attributes(cat, rng)
        layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        box = (round((x0 + dx) * W), round(y0 * H), round((x1 + dx) * W), round(y1 * H))
        draw_object(layer, cat, box, attrs)
        img.alpha_composite(layer)
        cats.append(cat)
        masks.append(np.array(layer)[:, :, 3] > 0)
        attrs_all.append(attrs)
    visible = [m & ~np.any(masks[i + 1:], axis=0) if i + 1 < len(masks) else m for i, m in enumerate(masks)]
    areas = sorted(int(m.sum()) for m in visible)
    for m, attrs in zip(visible, attrs_all):
        if len(areas) > 1 and m.sum() == areas[-1] and areas[-1] >= 1.5 * areas[-2]:
            attrs["size"] = "large"
        elif len(areas) > 1 and m.sum() == areas[0] and areas[0] <= 0.6 * areas[1]:
            attrs["size"] = "small"
    rels = relations(cats, masks, H, W)
    return img.convert("RGB"), [{"cat": c, "attrs": a, "rels": r, "area": int(m.sum())}
                                for c, a, r, m in zip(cats, attrs_all, rels, visible)]


def _noun_phrase(obj: dict[str, Any], rng: random.Random, *, with_part: bool) -> str:
    attrs, cat = obj["attrs"], obj["cat"]
    adjectives = [attrs[k] for k in ("size", "pattern") if attrs.get(k) not in (None, "plain")]
    if attrs.get("shape") and rng.random() < 0.3:
        adjectives.append(attrs["shape"])
    words = [*adjectives, attrs["colour"], cat]
    text = f"{_article(words[0])} {' '.join(words)}"
    parts = [p for p, _ in SPECS[cat].parts if p not in obj.get("said", set())]
    if with_part and parts and rng.random() < 0.6:
        part = rng.choice(parts)
        obj.setdefault("said", set()).add(part)
        colour = attrs[part]
        text += f" with {colour} {part}" if part in PLURAL_PARTS else f" with {_article(colour)} {colour} {part}"
    return text


def describe(background: str, objects: list[dict[str, Any]], rng: random.Random) -> str:
    """A DOCCI-style description: every object once with its looks, relations, parts, backdrop."""
    order = sorted(range(len(objects)), key=lambda i: -objects[i]["area"])
    first = objects[order[0]]
    sentences = [f"{rng.choice(_OPENING[background])} {_noun_phrase(first, rng, with_part=True)}."]
    mentioned = [order[0]]
    for i in order[1:]:
        obj = objects[i]
        related = [(other, preds) for other, preds in obj["rels"] if any(objects[m]["cat"] == other for m in mentioned)]
        np_ = _noun_phrase(obj, rng, with_part=True)
        if related:
            other, preds = rng.choice(related)
            predicate = rng.choice(preds)
            if predicate in _FRONTABLE and rng.random() < 0.4:
                sentences.append(f"{predicate.capitalize()} the {other} is {np_}.")
            else:
                sentences.append(f"{np_[0].upper()}{np_[1:]} is {predicate} the {other}.")
        else:
            sentences.append(f"There is also {np_}.")
        mentioned.append(i)
    for obj in objects:  # parts not said yet, and a second relation now and then
        for part, _ in SPECS[obj["cat"]].parts:
            if part not in obj.get("said", set()) and rng.random() < 0.5:
                colour = obj["attrs"][part]
                said = f"{colour} {part}" if part in PLURAL_PARTS else f"{_article(colour)} {colour} {part}"
                sentences.append(f"The {obj['cat']} has {said}.")
    pairs = [(a, b) for a in range(len(objects)) for b in range(len(objects)) if a < b]
    rng.shuffle(pairs)
    unrelated = [(a, b) for a, b in pairs
                 if not any(o == objects[b]["cat"] for o, _ in objects[a]["rels"])
                 and not any(o == objects[a]["cat"] for o, _ in objects[b]["rels"])]
    for a, b in unrelated[:2]:
        sentences.append(f"Both the {objects[a]['cat']} and the {objects[b]['cat']} are clearly visible.")
    sentences.append(_BACKDROP[background])
    return " ".join(sentences)


def make_source(out: Path, *, count: int, size: tuple[int, int] = (320, 240), seed: int = 20260318,
                first: int = 0, other_splits: bool = True) -> list[dict[str, str]]:
    """Write ``count`` test images and the descriptions file into ``out``; return the lines."""
    W, H = size
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines: list[dict[str, str]] = []
    if other_splits:  # lines of other splits: counted, never read; their images are not shipped
        lines.append({"example_id": "train_00000", "split": "train", "image_file": "train_00000.jpg",
                      "description": "A photo of a striped orange cat sleeping on a gray couch."})
    for n in range(first, first + count):
        example_id = f"test_{n:05d}"
        rng = random.Random(f"{seed}:{example_id}")
        layout = LAYOUTS[n % len(LAYOUTS)]
        if (n // len(LAYOUTS)) % 2:
            layout = (layout[0], [(c, 1 - x1, y0, 1 - x0, y1) for c, x0, y0, x1, y1 in layout[1]])
        img, objects = _render(layout, W, H, rng)
        img.save(out / "images" / f"{example_id}.jpg", quality=88)
        lines.append({"example_id": example_id, "split": "test", "image_file": f"{example_id}.jpg",
                      "description": describe(layout[0], objects, rng)})
    if other_splits:
        lines.append({"example_id": "qual_dev_00000", "split": "qual_dev", "image_file": "qual_dev_00000.jpg",
                      "description": "A close-up of a white ceramic mug with a blue handle on a wooden desk."})
        lines.append({"example_id": "train_00001", "split": "train", "image_file": "train_00001.jpg",
                      "description": "A red bicycle leaning against a brick wall next to a green door."})
    with open(out / "docci_descriptions.jsonlines", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (docci_descriptions.jsonlines + images/)")
    ap.add_argument("--count", type=int, default=24, help="number of test images")
    ap.add_argument("--size", default="320x240", help="image size WxH")
    ap.add_argument("--seed", type=int, default=20260318)
    args = ap.parse_args(argv)
    W, H = (int(v) for v in args.size.lower().split("x"))
    make_source(args.out, count=args.count, size=(W, H), seed=args.seed)


if __name__ == "__main__":
    main()
