"""Hostile source trees: links that leave the source, FIFOs, devices and sockets, and image names
whose WebDataset keys only differ after a dot. Each is a clean failure (exit 2, one ``error:`` line
naming the file, record and field, no traceback, no hang, the source and anything outside it
unchanged, nothing shipped) -- or, for names that merely sort differently, a build that succeeds."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from pathlib import Path
from typing import Callable

import pytest

from faultkit import finer_process, leftovers, tree
from finer_datasets import get_builder, register_builder_folder
from finer_datasets.core.manifest import verify
from finer_datasets.core.reader import iter_records

ANNO, DESCRIPTIONS = "anno.json", "docci_descriptions.jsonlines"
DOCCI = get_builder("docci")
TOY = Path(__file__).resolve().parents[1] / "fixtures" / "toy_builder"


def outside_copy(path: Path, outside: Path) -> Path:
    """A copy of ``path`` outside the source (what a link would ship)."""
    outside.mkdir(exist_ok=True)
    return Path(shutil.copy(path, outside / ("secret-" + path.name)))


def link_out(path: Path, outside: Path) -> None:
    """Replace ``path`` with a link to a copy of it outside the source."""
    target = outside_copy(path, outside)
    path.unlink()
    path.symlink_to(target)


def link_folder_out(folder: Path, outside: Path) -> None:
    """Replace the images folder with a link to a copy of it outside the source."""
    target = outside / "images-elsewhere"
    shutil.copytree(folder, target)
    shutil.rmtree(folder)
    folder.symlink_to(target, target_is_directory=True)


def fifo(path: Path, outside: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def dev_zero(path: Path, outside: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def zero_device(path: Path, outside: Path) -> None:
    """A character device like /dev/zero inside the source (needs the right to make one)."""
    path.unlink()
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except (PermissionError, AttributeError):
        pytest.skip("cannot make a device file here")


def unix_socket(path: Path, outside: Path) -> None:
    path.unlink()
    with socket.socket(socket.AF_UNIX) as sock:  # the socket file stays after the socket is closed
        sock.bind(str(path))


# case -> (what is changed: "image" (the first record's image), "images" (the folder) or "annotations",
#          the change, substrings of the error line)
CASES: dict[str, tuple[str, Callable[[Path, Path], None], list[str]]] = {
    "image_links_out": ("image", link_out, ["is a link to", "outside the source folder"]),
    "images_folder_links_out": ("images", link_folder_out, ["images is a link to", "outside the source folder"]),
    "image_is_a_fifo": ("image", fifo, ["a FIFO", "not a regular file"]),
    "image_links_to_dev_zero": ("image", dev_zero, ["/dev/zero", "outside the source folder"]),
    "image_is_a_device": ("image", zero_device, ["a character device", "not a regular file"]),
    "image_is_a_socket": ("image", unix_socket, ["a socket", "not a regular file"]),
    "annotations_link_out": ("annotations", link_out, ["is a link to", "outside the source folder"]),
    "annotations_are_a_fifo": ("annotations", fifo, ["a FIFO", "not a regular file"]),
}
# cases that would block or never end if the file were opened: run in a subprocess with a deadline
BLOCKING = {"image_is_a_fifo", "image_links_to_dev_zero", "image_is_a_device", "annotations_are_a_fifo"}


def target(src: Path, what: str, annotations: str, image: str) -> Path:
    return {"image": src / "images" / image, "images": src / "images", "annotations": src / annotations}[what]


def check(run, src: Path, outside: Path, out: Path, before: dict, before_outside: dict, *culprits: str) -> None:
    run.clean_failure(2, *culprits)
    assert tree(src) == before, "the build changed its source"
    assert tree(outside) == before_outside
    assert not out.exists() and leftovers(out.parent) == []


@pytest.mark.parametrize("case", list(CASES))
def test_compre_cap_source_that_leaves_itself_or_is_not_a_regular_file(case, tmp_path, make_source, finer):
    what, change, culprits = CASES[case]
    src, outside, out = make_source(), tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    first = json.loads((src / ANNO).read_text())[0]["image"]
    change(target(src, what, ANNO, first), outside)
    before, before_outside = tree(src), tree(outside)
    args = ("build", "compre_cap", "--source", src, "--out", out, "--no-progress")
    run = finer_process(*args, timeout=120) if case in BLOCKING else finer(*args)
    where = [ANNO] if what == "annotations" else [ANNO, "record 0", "'image'", first if what == "image" else "images"]
    check(run, src, outside, out, before, before_outside, *where, *culprits)


@pytest.mark.parametrize("case", list(CASES))
def test_docci_source_that_leaves_itself_or_is_not_a_regular_file(case, tmp_path, finer):
    what, change, culprits = CASES[case]
    src, outside, out = tmp_path / "src", tmp_path / "outside", tmp_path / "out"
    shutil.copytree(DOCCI.dummy_data_dir(), src)
    outside.mkdir()
    change(target(src, what, DESCRIPTIONS, "test_00000.jpg"), outside)
    before, before_outside = tree(src), tree(outside)
    args = ("build", "docci", "--source", src, "--out", out, "--no-progress",
            "--replay", DOCCI.sample_dir() / "transcript.jsonl")
    run = finer_process(*args, timeout=120) if case in BLOCKING else finer(*args)
    where = [DESCRIPTIONS] if what == "annotations" else [DESCRIPTIONS, "line 2", "test_00000", "'image_file'"]
    check(run, src, outside, out, before, before_outside, *where, *culprits)


def test_a_link_that_stays_inside_the_source_is_read(tmp_path, make_source, finer):
    src = make_source()
    data = json.loads((src / ANNO).read_text())
    (src / "store").mkdir()
    first = src / "images" / data[0]["image"]
    shutil.move(first, src / "store" / first.name)
    first.symlink_to(Path("..") / "store" / first.name)  # a relative link to a file of the source
    assert finer("build", "compre_cap", "--source", src, "--out", tmp_path / "out", "--no-progress").code == 0


# -- WebDataset keys ---------------------------------------------------------------------------------

def twin(src: Path, name: str) -> None:
    """One more CompreCap image record: the first one's annotations with its image copied to ``name``."""
    data = json.loads((src / ANNO).read_text())
    shutil.copy(src / "images" / data[0]["image"], src / "images" / name)
    data.append({**data[0], "image": name})
    (src / ANNO).write_text(json.dumps(data))


@pytest.mark.parametrize("names", [("000000000101-png.jpg",), ("000000000101.b.jpg",),
                                   ("000000000101-png.jpg", "000000000101-png-x.jpg", "000000000101.x.jpg")])
def test_compre_cap_names_that_differ_after_a_dot_build(names, tmp_path, make_source, finer):
    src = make_source()
    for name in names:
        twin(src, name)
    before = tree(src)
    assert finer("build", "compre_cap", "--source", src, "--out", tmp_path / "out", "--no-progress").code == 0
    files = sorted(r["image_file"] for r in iter_records(tmp_path / "out", verify(tmp_path / "out")))
    assert set(names) <= set(files) and len(files) == 3 + len(names) and tree(src) == before


def test_docci_ids_that_differ_after_a_dot_build(tmp_path, finer):
    from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

    src = tmp_path / "src"
    shutil.copytree(DOCCI.dummy_data_dir(), src)
    lines = [json.loads(line) for line in (src / DESCRIPTIONS).read_text().splitlines()]
    test = [line for line in lines if line["split"] == "test"]
    renamed = {test[0]["example_id"]: "a.b", test[1]["example_id"]: "a"}  # keys a-b and a
    for line in test[:2]:
        line["example_id"] = renamed[line["example_id"]]
    (src / DESCRIPTIONS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    before = tree(src)
    with ScriptedServer(ScriptedLLM(handlers=DOCCI.scripted_handlers())) as server:
        run = finer("build", "docci", "--source", src, "--out", tmp_path / "out", "--no-progress",
                    "--llm-base-url", server.url, "--llm-model", "scripted", "--llm-api-key-env", "")
    assert run.code == 0, run.err
    ids = [r["image_id"] for r in iter_records(tmp_path / "out", verify(tmp_path / "out"))]
    assert {"a", "a.b"} <= set(ids) and tree(src) == before


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy builder (outside the package, no key check of its own), from a copy in a folder named
    as tests/test_toy_builder.py names it: one package, so the two registrations agree."""
    folder = shutil.copytree(TOY, tmp_path_factory.mktemp("toy") / "toy_captions")
    return get_builder(register_builder_folder(folder).name)


def test_two_files_that_still_give_one_key_are_one_line_naming_both(toy, tmp_path, finer):
    """The core's check, so any builder has it."""
    src = tmp_path / "src"
    shutil.copytree(toy.dummy_data_dir(), src)
    images = src / "images"
    os.rename(images / "img1.png", images / "x.b.png")
    os.rename(images / "img2.png", images / "x-b.png")  # both key x-b
    text = (src / "captions.jsonl").read_text().replace("img1.png", "x.b.png").replace("img2.png", "x-b.png")
    (src / "captions.jsonl").write_text(text)
    before = tree(src)
    run = finer("build", "toy_captions", "--source", src, "--out", tmp_path / "out", "--no-progress")
    run.clean_failure(2, "images/x.b.png", "images/x-b.png", "both become WebDataset key 'x-b'", "captions.jsonl")
    assert tree(src) == before and not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_negatives_file_that_is_a_fifo_is_refused_without_blocking(tmp_path, sample_dir):
    negatives = tmp_path / "negatives.json"
    os.mkfifo(negatives)
    out = tmp_path / "out"
    run = finer_process("build", "compre_cap", "--sample", "--out", out, "--no-progress", "--negatives", negatives,
                        timeout=120)
    run.clean_failure(2, str(negatives), "a FIFO", "not a regular file")
    assert not out.exists() and leftovers(tmp_path) == []


def test_an_image_file_larger_than_any_image_is_refused_unread(tmp_path, make_source, finer):
    src = make_source()
    first = src / "images" / json.loads((src / ANNO).read_text())[0]["image"]
    with open(first, "r+b") as handle:
        handle.truncate(2 << 30)  # a sparse 2 GiB file: nothing is read of it
    others = {p: p.read_bytes() for p in src.rglob("*") if p.is_file() and p != first}
    run = finer("build", "compre_cap", "--source", src, "--out", tmp_path / "out", "--no-progress")
    run.clean_failure(2, ANNO, "record 0", "'image'", "larger than the limit")
    assert {p: p.read_bytes() for p in others} == others and first.stat().st_size == 2 << 30
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
