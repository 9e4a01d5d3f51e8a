"""Malformed CompreCap sources: one case per fault, each a clean failure (exit code, one line naming
file/record/field, no traceback, source unchanged, previous output unchanged, nothing left over)."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from faultkit import leftovers, tree

ANNO = "anno.json"


def anno(src: Path) -> list:
    return json.loads((src / ANNO).read_text())


def write_anno(src: Path, data: object) -> None:
    (src / ANNO).write_text(json.dumps(data))


def edit(change: Callable[[list], object]) -> Callable[[Path], None]:
    """A change made in place on the parsed annotations (its return value is ignored)."""
    def apply(src: Path) -> None:
        data = anno(src)
        change(data)
        write_anno(src, data)
    return apply


def raw(content: bytes) -> Callable[[Path], None]:
    def apply(src: Path) -> None:
        (src / ANNO).write_bytes(content)
    return apply


def image(change: Callable[[Path], None], index: int = 1) -> Callable[[Path], None]:
    def apply(src: Path) -> None:
        change(src / "images" / anno(src)[index]["image"])
    return apply


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no data (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def jpeg_without_pixels(path: Path) -> None:
    data = path.read_bytes()
    sos = data.index(b"\xff\xda")  # keep every header up to the start of scan, then end the image
    path.write_bytes(data[: sos] + b"\xff\xd9")


def dangling(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "nowhere.jpg")


def folder_named_like_image(path: Path) -> None:
    path.unlink()
    path.mkdir()


def jpeg_named_png(src: Path) -> None:
    data = anno(src)
    old = src / "images" / data[0]["image"]
    new = old.with_suffix(".png")
    old.rename(new)
    data[0]["image"] = new.name
    write_anno(src, data)


def colliding_keys(src: Path) -> None:
    data = anno(src)
    first = data[0]["image"]
    for twin in (first.replace(".jpg", ".v2.jpg"), first.replace(".jpg", "-v2.jpg")):  # both become key ...-v2
        shutil.copy(src / "images" / first, src / "images" / twin)
        data.append({**data[0], "image": twin})
    write_anno(src, data)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def folder_instead_of_anno(src: Path) -> None:
    (src / ANNO).unlink()
    (src / ANNO).mkdir()


# case id -> (change, exit code, substrings of the error line)
CASES = {
    "not_json": (raw(b"{not json"), 2, ["anno.json", "not valid JSON"]),
    "empty_file": (raw(b""), 2, ["anno.json", "not valid JSON"]),
    "empty_list": (raw(b"[]"), 2, ["anno.json", "list of images is empty"]),
    "object_not_list": (raw(b"{}"), 2, ["anno.json", "expected a JSON list"]),
    "null": (raw(b"null"), 2, ["anno.json", "expected a JSON list"]),
    "number": (raw(b"42"), 2, ["anno.json", "expected a JSON list"]),
    "list_of_strings": (raw(b'["a.jpg"]'), 2, ["record 0", "expected an object"]),
    "missing_image": (edit(lambda d: d[1].pop("image")), 2, ["record 1", "'image'", "missing"]),
    "image_not_string": (edit(lambda d: d[1].update(image=123)), 2, ["record 1", "'image'", "non-empty string"]),
    "image_empty": (edit(lambda d: d[0].update(image="  ")), 2, ["record 0", "'image'"]),
    "image_absolute": (edit(lambda d: d[0].update(image="/etc/passwd.jpg")), 2, ["record 0", "relative"]),
    "image_parent": (edit(lambda d: d[0].update(image="../x.jpg")), 2, ["record 0", "relative"]),
    "image_gif": (edit(lambda d: d[0].update(image="a.gif")), 2, ["record 0", "unsupported image type"]),
    "missing_info": (edit(lambda d: d[2].pop("info")), 2, ["record 2", "'info'", "missing"]),
    "info_not_list": (edit(lambda d: d[2].update(info="x")), 2, ["record 2", "'info'", "expected a list"]),
    "info_item_not_object": (edit(lambda d: d[0]["info"].append(7)), 2, ["record 0", "info[3]", "expected an object"]),
    "missing_category": (edit(lambda d: d[1]["info"][0].pop("category")), 2, ["record 1", "info[0].category", "missing"]),
    "category_not_string": (edit(lambda d: d[1]["info"][0].update(category=["cat"])), 2, ["info[0].category"]),
    "description_not_string": (edit(lambda d: d[0]["info"][0].update(short_description=5)), 2,
                               ["info[0].short_description", "expected a string"]),
    "relation_number": (edit(lambda d: d[0]["info"][0].update(relation=3)), 2, ["info[0].relation", "string or a list"]),
    "relation_list_of_numbers": (edit(lambda d: d[0]["info"][0].update(relation=["ok.", 1])), 2, ["info[0].relation[1]"]),
    "duplicate_image": (edit(lambda d: d.append(dict(d[0]))), 2, ["record 3", "duplicate image"]),
    "duplicate_json_key": (lambda s: (s / ANNO).write_text((s / ANNO).read_text().replace(
        '"image":', '"image": "x.jpg", "image":', 1)), 2, ["anno.json", "'image'", "appears twice"]),
    "deeply_nested": (raw(nested(100_000)), 2, ["anno.json", "nested too deeply"]),
    "latin1_bytes": (lambda s: (s / ANNO).write_bytes((s / ANNO).read_bytes().replace(b"table", b"t\xe4ble", 1)), 2,
                     ["anno.json", "not UTF-8"]),
    "utf16_file": (lambda s: (s / ANNO).write_bytes((s / ANNO).read_text().encode("utf-16")), 2, ["anno.json", "not UTF-8"]),
    "anno_is_a_folder": (folder_instead_of_anno, 2, ["anno.json", "is a folder"]),
    "anno_missing": (lambda s: (s / ANNO).unlink(), 2, ["anno.json", "file not found"]),
    "image_missing": (image(lambda p: p.unlink()), 2, ["'image'", "image file not found"]),
    "image_truncated": (image(lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])), 2,
                        ["'image'", "does not decode"]),
    "image_not_an_image": (image(lambda p: p.write_text("hello")), 2, ["'image'", "not a readable image"]),
    "image_headers_without_pixels": (image(jpeg_without_pixels), 2, ["'image'", "does not decode"]),
    "image_is_a_folder": (image(folder_named_like_image), 2, ["'image'", "is a folder"]),
    "image_dangling_symlink": (image(dangling), 2, ["'image'", "image file not found"]),
    "image_decompression_bomb": (image(lambda p: p.with_suffix(".jpg").write_bytes(png_header_only(30_000, 30_000))
                                       ), 2, ["'image'"]),
    "image_content_differs_from_name": (jpeg_named_png, 2, ["'image'", "file content is JPEG"]),
    "two_ids_one_key": (colliding_keys, 2, ["both become key"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_source_fails_cleanly(case, tmp_path, make_source, finer):
    change, code, culprits = CASES[case]
    src = make_source()
    previous = tmp_path / "out"
    assert finer("build", "compre_cap", "--source", src, "--out", previous, "--no-progress").code == 0
    before_out = tree(previous)
    change(src)
    before_src = tree(src)
    run = finer("build", "compre_cap", "--source", src, "--out", previous, "--overwrite", "--no-progress")
    run.clean_failure(code, *culprits)
    assert tree(src) == before_src, "the build changed its source"
    assert tree(previous) == before_out, "a failed build touched the previous output"
    assert leftovers(tmp_path) == []


def test_at_least_30_malformed_source_cases():
    assert len(CASES) >= 30


def test_bomb_case_really_is_oversized(tmp_path):
    data = png_header_only(30_000, 30_000)
    assert struct.unpack(">II", data[16:24]) == (30_000, 30_000) and len(data) < 100
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


def test_trailing_bytes_after_the_end_of_a_jpeg_are_fine(tmp_path, make_source, finer):
    src = make_source()
    path = src / "images" / anno(src)[0]["image"]
    path.write_bytes(path.read_bytes() + b"\0\0trailing garbage after EOI")
    assert finer("build", "compre_cap", "--source", src, "--out", tmp_path / "o", "--no-progress").code == 0


def test_images_in_sub_folders_are_fingerprinted(tmp_path, make_source, builder):
    from finer_datasets import build

    src = make_source()
    data = anno(src)
    (src / "images" / "sub").mkdir()
    os.rename(src / "images" / data[0]["image"], src / "images" / "sub" / data[0]["image"])
    data[0]["image"] = "sub/" + data[0]["image"]
    write_anno(src, data)
    first = build(builder, source=src, out=tmp_path / "a", progress=False).manifest["sources"][1]
    pixels = src / "images" / data[0]["image"]
    pixels.write_bytes(pixels.read_bytes() + b"\0")  # a changed image in a sub-folder changes the fingerprint
    second = build(builder, source=src, out=tmp_path / "b", progress=False).manifest["sources"][1]
    assert first["files"] == second["files"] == 3 and first["sha256"] != second["sha256"]
