"""Procedurally draw small scenes and write them in the CompreCap annotation format.

Each image is drawn with Pillow from a hand-laid-out scene (normalised boxes), so the
annotations are true of the pixels: colours, patterns and parts are drawn as stated,
sizes compare visible mask areas, and every relation is derived from the drawn geometry
(support, overlap/occlusion, relative position). Output: ``anno.json`` (a list of
``{"image", "info": [{category, short_description, extend_description, mask_out,
relation}]}``; ``mask_out`` is base64(zlib(uint8 HxW 0/1 mask))) plus ``images/*.jpg``.
Deterministic: the only randomness is ``random.Random`` seeded per image.

Regenerate the checked-in outputs with::

    .venv/bin/python builders/compre_cap/maintenance/make_sample.py --out builders/compre_cap/sample --scenes sample --count 12 --size 320x240 --first-id 1
    .venv/bin/python builders/compre_cap/maintenance/make_sample.py --out builders/compre_cap/dummy_data --scenes dummy --count 3 --size 96x72 --first-id 101
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

RGB = {"red": (210, 40, 40), "blue": (40, 80, 200), "green": (40, 150, 50), "yellow": (240, 210, 40),
       "orange": (240, 140, 30), "purple": (130, 60, 170), "pink": (240, 140, 180), "brown": (130, 80, 40),
       "black": (25, 25, 25), "white": (245, 245, 245), "gray": (140, 140, 140)}
BACKGROUNDS = {"outdoor": [((170, 210, 240), 0.55), ((120, 190, 90), 1.0)],
               "indoor": [((235, 225, 200), 0.45), ((200, 170, 130), 1.0)],
               "lake": [((170, 210, 240), 0.45), ((70, 130, 190), 0.78), ((120, 190, 90), 1.0)]}
SKY = {"sun", "cloud", "kite", "bird"}
SUPPORTS = {"table", "chair", "box", "book"}
PLURAL_PARTS = {"wheels", "legs", "leaves"}
Box = tuple[int, int, int, int]
Scene = tuple[str, list[tuple[str, float, float, float, float]]]


@dataclass(frozen=True)
class Spec:
    colours: tuple[str, ...]
    patternable: bool = False
    shape: str | None = None
    parts: tuple[tuple[str, tuple[str, ...]], ...] = ()  # () colours = same as the body


SPECS = {
    "ball": Spec(("red", "blue", "yellow", "orange", "purple", "pink"), True, "round"),
    "box": Spec(("red", "blue", "brown", "orange", "purple", "green"), True, "square"),
    "table": Spec(("brown", "white", "black", "gray"), False, "rectangular", (("legs", ()),)),
    "tree": Spec(("green",), parts=(("trunk", ("brown",)), ("leaves", ()))),
    "house": Spec(("white", "yellow", "pink", "blue", "orange"),
                  parts=(("roof", ("red", "brown", "black", "gray")), ("door", ("brown", "red", "blue", "black")))),
    "sun": Spec(("yellow", "orange"), False, "round"),
    "cloud": Spec(("white", "gray")),
    "car": Spec(("red", "blue", "yellow", "green", "white", "orange"), parts=(("wheels", ("black",)),)),
    "flower": Spec(("red", "pink", "yellow", "purple", "white"), parts=(("leaves", ("green",)),)),
    "kite": Spec(("red", "orange", "purple", "blue", "yellow", "pink"), True, parts=(("string", ("black", "gray")),)),
    "cup": Spec(("white", "red", "blue", "yellow", "green"), True, parts=(("handle", ()),)),
    "lamp": Spec(("yellow", "white", "red", "blue", "green")),
    "book": Spec(("red", "blue", "green", "purple", "orange", "brown"), False, "rectangular"),
    "chair": Spec(("brown", "red", "blue", "black", "white"), parts=(("legs", ()),)),
    "bird": Spec(("blue", "red", "yellow", "black", "brown")),
    "boat": Spec(("red", "blue", "brown", "yellow")),
    "fence": Spec(("brown", "white")),
    "window": Spec(("white", "brown", "black"), False, "square"),
}

# (background, [(category, x0, y0, x1, y1)]) in drawing order; coordinates are fractions of W/H.
SAMPLE_SCENES: list[Scene] = [
    ("outdoor", [("sun", .75, .06, .9, .26), ("house", .1, .25, .42, .75), ("tree", .5, .28, .68, .78),
                 ("car", .6, .66, .92, .86)]),
    ("indoor", [("window", .62, .08, .85, .38), ("table", .15, .5, .6, .85), ("cup", .2, .38, .3, .5),
                ("book", .35, .44, .52, .5), ("ball", .3, .72, .42, .85), ("chair", .65, .45, .85, .88)]),
    ("outdoor", [("cloud", .1, .08, .4, .25), ("tree", .15, .3, .4, .85), ("kite", .55, .1, .75, .5)]),
    ("lake", [("sun", .08, .06, .22, .24), ("cloud", .55, .08, .85, .24), ("boat", .3, .48, .6, .72),
              ("tree", .72, .3, .95, .9), ("bird", .66, .36, .78, .46)]),
    ("outdoor", [("cloud", .05, .05, .3, .2), ("sun", .8, .05, .94, .23), ("house", .35, .2, .65, .72),
                 ("tree", .7, .25, .9, .75), ("fence", .02, .6, .45, .78), ("flower", .15, .7, .22, .92),
                 ("ball", .5, .8, .58, .9)]),
    ("indoor", [("table", .25, .5, .75, .88), ("lamp", .4, .18, .58, .5)]),
    ("indoor", [("window", .1, .08, .35, .4), ("chair", .08, .45, .3, .88), ("table", .35, .5, .8, .86),
                ("box", .45, .34, .6, .5), ("cup", .66, .4, .74, .5)]),
    ("outdoor", [("cloud", .4, .05, .7, .2), ("kite", .08, .06, .3, .42), ("bird", .75, .12, .85, .2),
                 ("house", .55, .28, .9, .78), ("tree", .2, .35, .42, .85), ("car", .3, .7, .62, .9)]),
    ("indoor", [("table", .1, .5, .55, .85), ("book", .18, .42, .36, .5), ("flower", .4, .28, .48, .5),
                ("box", .65, .65, .85, .88)]),
    ("outdoor", [("sun", .1, .06, .26, .28), ("house", .4, .22, .75, .75), ("window", .59, .48, .69, .6)]),
    ("outdoor", [("cloud", .6, .06, .9, .22), ("bird", .3, .1, .4, .18), ("fence", .2, .58, .95, .76),
                 ("tree", .05, .25, .3, .85), ("flower", .45, .7, .52, .9), ("car", .62, .66, .92, .88)]),
    ("lake", [("cloud", .1, .06, .35, .2), ("sun", .8, .05, .94, .22), ("boat", .15, .48, .5, .72),
              ("bird", .55, .25, .65, .33), ("tree", .7, .35, .92, .9)]),
]
DUMMY_SCENES: list[Scene] = [
    ("outdoor", [("sun", .08, .06, .26, .3), ("house", .3, .25, .65, .8), ("tree", .7, .3, .92, .82)]),
    ("indoor", [("table", .15, .45, .65, .85), ("cup", .3, .3, .42, .45), ("ball", .33, .68, .47, .85),
                ("chair", .7, .4, .9, .86)]),
    ("outdoor", [("cloud", .05, .08, .45, .3), ("kite", .55, .08, .8, .55)]),
]


def dark(c: tuple[int, int, int], f: float = 0.6) -> tuple[int, int, int]:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


def body(layer: Image.Image, shape: Callable[..., None], colour: str, pattern: str = "plain") -> None:
    """Fill a shape (drawn by ``shape(draw, fill=, outline=)``) with a colour and pattern."""
    m = Image.new("L", layer.size, 0)
    shape(ImageDraw.Draw(m), fill=255)
    fill = Image.new("RGB", layer.size, RGB[colour])
    bb = m.getbbox()
    if bb and pattern != "plain":
        d, alt = ImageDraw.Draw(fill), RGB["black" if colour in ("white", "yellow", "pink") else "white"]
        if pattern == "striped":
            p = max(3, (bb[3] - bb[1]) // 5)
            for y in range(bb[1], bb[3], p):
                d.rectangle((bb[0], y, bb[2], y + p // 2 - 1), fill=alt)
        else:
            step = max(4, min(bb[2] - bb[0], bb[3] - bb[1]) // 4)
            r = max(1, step // 4)
            for y in range(bb[1] + step // 2, bb[3], step):
                for x in range(bb[0] + step // 2, bb[2], step):
                    d.ellipse((x - r, y - r, x + r, y + r), fill=alt)
    layer.paste(fill, (0, 0), m)
    shape(ImageDraw.Draw(layer), outline=dark(RGB[colour]))


def draw_object(layer: Image.Image, cat: str, b: Box, a: dict[str, str]) -> None:
    """Draw one object of category ``cat`` inside box ``b`` with attributes ``a``."""
    d = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = b
    w, h = x1 - x0, y1 - y0
    cx, col, pat = (x0 + x1) / 2, a["colour"], a.get("pattern", "plain")
    s = min(w, h)
    sq = (cx - s / 2, y1 - s, cx + s / 2, y1)  # bottom-anchored square
    lw = max(1, s // 12)
    if cat == "ball":
        body(layer, lambda dd, **k: dd.ellipse(sq, **k), col, pat)
    elif cat == "box":
        body(layer, lambda dd, **k: dd.rectangle(sq, width=max(1, s // 16), **k), col, pat)
    elif cat in ("table", "chair"):
        top = y0 + 0.5 * h if cat == "chair" else y0
        d.rectangle((x0, top, x1, top + max(2, 0.12 * h)), fill=RGB[col])
        for lx in (x0 + 0.05 * w, x1 - 0.05 * w - max(2, 0.08 * w)):
            d.rectangle((lx, top, lx + max(2, 0.08 * w), y1), fill=RGB[a["legs"]])
        if cat == "chair":
            d.rectangle((x1 - max(2, 0.14 * w), y0, x1, top), fill=RGB[col])
    elif cat == "tree":
        d.rectangle((cx - 0.1 * w, y0 + 0.5 * h, cx + 0.1 * w, y1), fill=RGB[a["trunk"]])
        d.ellipse((x0, y0, x1, y0 + 0.65 * h), fill=RGB[a["leaves"]], outline=dark(RGB[a["leaves"]]))
    elif cat == "house":
        d.rectangle((x0 + 0.08 * w, y0 + 0.4 * h, x1 - 0.08 * w, y1), fill=RGB[col], outline=dark(RGB[col]))
        d.polygon([(x0, y0 + 0.4 * h), (x1, y0 + 0.4 * h), (cx, y0)], fill=RGB[a["roof"]])
        d.rectangle((x0 + 0.2 * w, y0 + 0.65 * h, x0 + 0.38 * w, y1), fill=RGB[a["door"]])
    elif cat == "sun":
        r, cy = s * 0.29, (y0 + y1) / 2
        for i in range(8):
            v = np.exp(1j * np.pi * i / 4)
            d.line((cx + v.real * r * 1.25, cy + v.imag * r * 1.25, cx + v.real * r * 1.7, cy + v.imag * r * 1.7),
                   fill=RGB[col], width=max(1, int(r / 6)))
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=RGB[col])
    elif cat == "cloud":
        c = RGB[col] if col == "white" else (150, 150, 155)
        for e in ((x0, y0 + .35 * h, x0 + .5 * w, y1), (x0 + .25 * w, y0, x0 + .75 * w, y1 - .1 * h),
                  (x0 + .5 * w, y0 + .3 * h, x1, y1)):
            d.ellipse(e, fill=c)
    elif cat == "car":
        d.polygon([(x0 + .22 * w, y0 + .38 * h), (x0 + .32 * w, y0), (x0 + .68 * w, y0), (x0 + .8 * w, y0 + .38 * h)],
                  fill=RGB[col], outline=dark(RGB[col]))
        d.rectangle((x0 + .36 * w, y0 + .08 * h, x0 + .64 * w, y0 + .34 * h), fill=(180, 220, 250))
        d.rectangle((x0, y0 + .36 * h, x1, y0 + .78 * h), fill=RGB[col], outline=dark(RGB[col]))
        r = 0.22 * h
        for wx in (x0 + .25 * w, x0 + .75 * w):
            d.ellipse((wx - r, y1 - 2 * r, wx + r, y1), fill=RGB[a["wheels"]])
    elif cat == "flower":
        d.line((cx, y0 + 0.2 * h, cx, y1), fill=RGB["green"], width=max(1, w // 8))
        for sgn in (-1, 1):
            d.ellipse((cx + (sgn - 1) * 0.25 * w, y0 + .55 * h, cx + (sgn + 1) * 0.25 * w, y0 + .68 * h),
                      fill=RGB[a["leaves"]])
        r, cy = min(w / 2, 0.2 * h) * 0.42, y0 + min(w / 2, 0.2 * h)
        for i in range(5):
            v = np.exp(2j * np.pi * i / 5 - 0.5j * np.pi) * r * 1.1
            d.ellipse((cx + v.real - r, cy + v.imag - r, cx + v.real + r, cy + v.imag + r), fill=RGB[col])
        eye = RGB["orange" if col == "yellow" else "yellow"]
        d.ellipse((cx - r * .7, cy - r * .7, cx + r * .7, cy + r * .7), fill=eye)
    elif cat == "kite":
        kx, kw = x0 + 0.3 * w, 0.3 * w
        pts = [(kx, y0), (kx + kw, y0 + .25 * h), (kx, y0 + .6 * h), (kx - kw, y0 + .25 * h)]
        body(layer, lambda dd, **k: dd.polygon(pts, **k), col, pat)
        d.line((kx, y0 + .6 * h, kx + .35 * w, y0 + .8 * h, x1 - .1 * w, y0 + .88 * h, x1 - 1, y1 - 1),
               fill=RGB[a["string"]], width=max(1, s // 40))
    elif cat == "cup":
        pts = [(x0, y0), (x0 + .75 * w, y0), (x0 + .65 * w, y1), (x0 + .1 * w, y1)]
        d.ellipse((x0 + .55 * w, y0 + .2 * h, x1, y0 + .7 * h), outline=RGB[a["handle"]], width=max(2, w // 9))
        body(layer, lambda dd, **k: dd.polygon(pts, **k), col, pat)
    elif cat == "lamp":
        d.rectangle((cx - max(1, .05 * w), y0 + .4 * h, cx + max(1, .05 * w), y1), fill=RGB["black"])
        d.rectangle((x0 + .25 * w, y1 - .1 * h, x1 - .25 * w, y1), fill=RGB["black"])
        d.polygon([(x0 + .3 * w, y0), (x0 + .7 * w, y0), (x1, y0 + .42 * h), (x0, y0 + .42 * h)],
                  fill=RGB[col], outline=dark(RGB[col]))
    elif cat == "book":
        d.rectangle(b, fill=RGB[col], outline=dark(RGB[col]))
        d.rectangle((x0 + .06 * w, y0 + .55 * h, x1, y0 + .8 * h), fill=RGB["white"])
    elif cat == "bird":
        d.ellipse((x0, y0 + .3 * h, x0 + .75 * w, y1), fill=RGB[col])
        d.ellipse((x0 + .5 * w, y0, x0 + .9 * w, y0 + .6 * h), fill=RGB[col])
        d.polygon([(x0 + .88 * w, y0 + .2 * h), (x1, y0 + .32 * h), (x0 + .86 * w, y0 + .42 * h)], fill=RGB["orange"])
        d.ellipse((x0 + .12 * w, y0 + .45 * h, x0 + .5 * w, y0 + .75 * h), fill=dark(RGB[col]))
    elif cat == "boat":
        d.line((cx, y0, cx, y0 + .62 * h), fill=RGB["brown"], width=lw)
        d.polygon([(cx + lw, y0 + .05 * h), (cx + lw, y0 + .55 * h), (x1 - .12 * w, y0 + .55 * h)], fill=RGB["white"])
        d.polygon([(x0, y0 + .6 * h), (x1, y0 + .6 * h), (x1 - .15 * w, y1), (x0 + .15 * w, y1)], fill=RGB[col])
    elif cat == "fence":
        pw = max(2, int(0.16 * h))
        for px in range(x0, x1 - pw + 1, int(pw * 1.8)):
            d.polygon([(px, y0 + .12 * h), (px + pw / 2, y0), (px + pw, y0 + .12 * h), (px + pw, y1), (px, y1)],
                      fill=RGB[col], outline=dark(RGB[col], 0.75))
        for ry in (0.3, 0.7):
            d.rectangle((x0, y0 + ry * h, x1, y0 + (ry + 0.1) * h), fill=RGB[col], outline=dark(RGB[col], 0.75))
    elif cat == "window":
        c = (cx - s / 2, (y0 + y1 - s) / 2, cx + s / 2, (y0 + y1 + s) / 2)
        d.rectangle(c, fill=RGB[col])
        m = max(1, s * 0.1)
        d.rectangle((c[0] + m, c[1] + m, c[2] - m, c[3] - m), fill=(180, 220, 250))
        d.line((cx, c[1], cx, c[3]), fill=RGB[col], width=max(1, int(m / 2)))
        d.line((c[0], (c[1] + c[3]) / 2, c[2], (c[1] + c[3]) / 2), fill=RGB[col], width=max(1, int(m / 2)))
    else:
        raise ValueError(f"unknown category {cat!r}")


def relations(cats: list[str], masks: list[np.ndarray], H: int, W: int) -> list[list[tuple[str, list[str]]]]:
    """For each object, the (other category, true predicates) pairs derived from the drawn masks."""
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))

    def support(i: int, j: int) -> str | None:
        (a, (ax0, ay0, ax1, ay1)), (b, (bx0, by0, bx1, by1)) = (cats[i], boxes[i]), (cats[j], boxes[j])
        if b in SUPPORTS and a not in SKY and abs(ay1 - by0) <= 0.03 * H and bx0 <= (ax0 + ax1) / 2 <= bx1:
            return "on"
        if a == "window" and i > j and bx0 <= ax0 and ax1 <= bx1 and by0 <= ay0 and ay1 <= by1:
            return "on"
        if (b in ("table", "chair") and bx0 <= ax0 and ax1 <= bx1 and ay0 > by0 + 0.2 * (by1 - by0)
                and abs(ay1 - by1) <= 0.04 * H):
            return "under"
        return None

    out: list[list[tuple[str, list[str]]]] = [[] for _ in cats]
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(zip(cats, boxes)):
        for j, (b, (bx0, by0, bx1, by1)) in enumerate(zip(cats, boxes)):
            if i == j or support(j, i):
                continue
            preds: list[str] = []
            xover = min(ax1, bx1) - max(ax0, bx0)
            if sup := support(i, j):
                preds = [sup]
            elif int((masks[i] & masks[j]).sum()) >= max(4, 0.02 * min(masks[i].sum(), masks[j].sum())):
                preds = ["in front of"] if i > j else ["behind"]
            elif ay1 < by0 - 0.03 * H and xover > 0 and a in SKY | {"window", "lamp"}:
                preds = ["above"]
            elif by1 < ay0 - 0.03 * H and xover > 0 and b in SKY | {"window", "lamp"}:
                preds = ["below"]
            elif min(ay1, by1) - max(ay0, by0) >= 0.3 * min(ay1 - ay0, by1 - by0) and xover < 0:
                preds = ["to the left of" if ax1 < bx0 else "to the right of"]
                preds += ["next to", "beside"] * (-xover < 0.08 * W) + ["near"] * (-xover < 0.2 * W)
            if preds:
                out[i].append((b, preds))
    return out


def encode_mask(m: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(m.astype(np.uint8).tobytes(), 9)).decode("ascii")


def describe(cat: str, attrs: dict[str, str], rng: random.Random) -> tuple[str, str]:
    """Short description (1-2 adjectives) and extended description (0-2 further true sentences)."""
    spec = SPECS[cat]
    adjs = [attrs[k] for k in ("size", "pattern", "shape") if k in attrs]
    adjs = [x for x in adjs if x != "plain" or rng.random() < 0.3]
    rng.shuffle(adjs)
    first = [attrs["colour"]] + adjs[:rng.choice((0, 1)) if adjs else 0]
    rng.shuffle(first)
    short = f"The {cat} is {' and '.join(first)}."
    facts = [f"The {cat} is {x}." for x in adjs[len(first) - 1:]]
    for part, _ in spec.parts:
        c = attrs[part]
        facts.append(f"The {cat} has {c} {part}." if part in PLURAL_PARTS
                     else f"The {cat} has {'an' if c[0] in 'aeiou' else 'a'} {c} {part}.")
    rng.shuffle(facts)
    return short, " ".join(facts[:rng.choice((0, 1, 2, 2))])



def pick_attributes(cat: str, rng: random.Random) -> dict[str, str]:
    """The drawn attributes of one object of category ``cat`` (colour, pattern, shape, parts)."""
    spec = SPECS[cat]
    attrs = {"colour": rng.choice(spec.colours)}
    if spec.patternable:
        attrs["pattern"] = rng.choice(("plain", "plain", "striped", "dotted"))
    if spec.shape:
        attrs["shape"] = spec.shape
    for part, choices in spec.parts:
        attrs[part] = rng.choice([c for c in choices if c != attrs["colour"]]) if choices else attrs["colour"]
    return attrs

def render(scene: Scene, W: int, H: int, rng: random.Random, mirror: bool) -> tuple[Image.Image, list[dict]]:
    bg, objects = scene
    img = Image.new("RGBA", (W, H))
    top = 0
    for colour, frac in BACKGROUNDS[bg]:
        ImageDraw.Draw(img).rectangle((0, top, W, round(frac * H)), fill=colour)
        top = round(frac * H)
    cats, full, attrs_all = [], [], []
    for cat, x0, y0, x1, y1 in objects:
        if mirror:
            x0, x1 = 1 - x1, 1 - x0
        attrs = pick_attributes(cat, rng)
        layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        draw_object(layer, cat, (round(x0 * W), round(y0 * H), round(x1 * W), round(y1 * H)), attrs)
        img.alpha_composite(layer)
        cats.append(cat)
        full.append(np.array(layer)[:, :, 3] > 0)
        attrs_all.append(attrs)
    visible = [m & ~np.any(full[i + 1:], axis=0) if i + 1 < len(full) else m for i, m in enumerate(full)]
    areas = sorted(int(m.sum()) for m in visible)
    for m, attrs in zip(visible, attrs_all):
        if not m.any():
            raise RuntimeError(f"{cat}: object fully occluded")
        if len(areas) > 1 and m.sum() == areas[-1] and areas[-1] >= 1.5 * areas[-2]:
            attrs["size"] = "large"
        elif len(areas) > 1 and m.sum() == areas[0] and areas[0] <= 0.6 * areas[1]:
            attrs["size"] = "small"
    info = []
    for cat, m, attrs, rels in zip(cats, visible, attrs_all, relations(cats, full, H, W)):
        short, extend = describe(cat, attrs, rng)
        rng.shuffle(rels)
        rels.sort(key=lambda r: r[1][0] not in ("on", "under"))
        k = rng.choice((0, 1, 1, 2, 2, 3))
        if rels and rels[0][1][0] in ("on", "under"):
            k = max(k, 1)  # always state the support relation
        sentences = [f"The {cat} is {rng.choice(p)} the {other}." for other, p in rels[:k]]
        info.append({"category": cat, "short_description": short, "extend_description": extend,
                     "mask_out": encode_mask(m), "relation": sentences})
    return img.convert("RGB"), info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output directory (anno.json + images/)")
    ap.add_argument("--scenes", choices=("sample", "dummy"), default="sample", help="scene layout list")
    ap.add_argument("--count", type=int, default=None, help="number of images (layouts cycle, mirrored)")
    ap.add_argument("--size", default="320x240", help="image size WxH")
    ap.add_argument("--first-id", type=int, default=1, help="numeric id of the first image")
    ap.add_argument("--seed", type=int, default=20240607)
    args = ap.parse_args(argv)
    W, H = (int(v) for v in args.size.lower().split("x"))
    scenes = SAMPLE_SCENES if args.scenes == "sample" else DUMMY_SCENES
    count = args.count or len(scenes)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    anno = []
    for n in range(count):
        image_id = args.first_id + n
        rng = random.Random(args.seed * 100003 + image_id)
        img, info = render(scenes[n % len(scenes)], W, H, rng, mirror=(n // len(scenes)) % 2 == 1)
        name = f"{image_id:012d}.jpg"
        img.save(args.out / "images" / name, quality=85)
        anno.append({"image": name, "info": info})
    # The real annotations also carry a bare-string and an empty-string "relation"; include one of each.
    items = [o for a in anno for o in a["info"]]
    single = next((o for o in items if len(o["relation"]) == 1), None)
    if single is not None:
        single["relation"] = single["relation"][0]
    empty = next((o for o in items if o["relation"] == []), None)
    if empty is not None:
        empty["relation"] = ""
    with open(args.out / "anno.json", "w", encoding="utf-8") as f:
        json.dump(anno, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
