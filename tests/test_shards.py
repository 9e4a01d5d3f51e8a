"""Shards are written through ``webdataset.TarWriter`` and stay byte for byte what the hand-written
writer of 2.x wrote (pinned digests; the same bytes as a plain ``tarfile`` with the fixed metadata),
inline and in the background thread; why the metadata is fixed and why the shard splitting stays
ours (webdataset's ``ShardWriter`` counts only payload bytes)."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
import tomllib
from pathlib import Path

import pytest
import webdataset

from finer_datasets.core.shards import ShardWriter, TarWriter, shard_pattern

ROOT = Path(__file__).resolve().parents[1]


def samples() -> list[tuple[str, dict[str, bytes]]]:
    """60 samples: names past tar's 100-character field (PAX headers), empty members, sizes on and
    around the 512-byte blocks and tarfile's 10 KiB pieces, JPEG and PNG members."""
    rng = random.Random(7)
    out = []
    for i in range(60):
        key = f"{i:04d}" + "x" * rng.choice([0, 0, 97, 150])
        members = {"json": rng.randbytes(rng.choice([0, 1, 511, 512, 513, 3000]))}
        if i % 3:
            members[("jpg", "png")[i % 2]] = rng.randbytes(rng.choice([100, 10240, 10241, 40000]))
        out.append((key, members))
    return out


def plain_tar(items) -> bytes:
    """The same samples written by ``tarfile`` alone with the fixed metadata (the format reference)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key, members in items:
            for extension in sorted(members):
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size, info.mtime, info.mode, info.uname, info.gname = len(members[extension]), 0, 0o644, "", ""
                tar.addfile(info, io.BytesIO(members[extension]))
    return buffer.getvalue()


#: sha256 of the tar of samples() as the 2.x writer wrote it (hand-made headers), before webdataset
PINNED_TAR = "63a8cf45ba769083f654ddac87c9d31e059e6f5e5b7c436afa29e57156d70b16"
#: sha256 of the shards' sha256s (max_samples=7, max_bytes=60000), as the 2.x writer split them
PINNED_SHARDS = "748e1baed31a282df77693bf0d46149ce04543599ffd79bf4774aad0211ffd1c"


@pytest.mark.parametrize("background", [False, True])
def test_the_tar_is_byte_identical_to_the_2x_writer_and_to_plain_tarfile(background, monkeypatch):
    writes = []

    class Spy(webdataset.TarWriter):
        def write(self, obj):
            writes.append(obj["__key__"])
            return super().write(obj)

    monkeypatch.setattr(webdataset, "TarWriter", Spy)
    out = io.BytesIO()
    tar = TarWriter(out, background=background)
    sizes = [tar.write(key, members) for key, members in samples()]
    sha = tar.close()
    data = out.getvalue()
    assert writes == [key for key, _ in samples()]  # every sample went through webdataset's writer
    assert sha == hashlib.sha256(data).hexdigest() == PINNED_TAR
    assert data == plain_tar(samples())
    assert sum(sizes) == 763904 and sizes[:3] == [2048, 1536, 12800]  # what write() returned in 2.x
    assert tar.size == len(data) == 768000 and len(data) % tarfile.RECORDSIZE == 0  # end blocks + padding
    assert tar.close() == sha  # closing twice writes nothing more


def test_the_shard_split_and_bytes_are_those_of_the_2x_writer(tmp_path):
    posted = []
    writer = ShardWriter(tmp_path, "train", max_samples=7, max_bytes=60000, post=posted.append, background=True)
    for key, members in samples():
        writer.write(key, members)
    shards = writer.close()
    assert hashlib.sha256("".join(s.sha256 for s in shards).encode()).hexdigest() == PINNED_SHARDS
    assert [s.samples for s in shards] == [7, 5, 4, 7, 6, 4, 6, 5, 7, 7, 2] and posted == shards
    for shard in shards:
        data = (tmp_path / shard.path).read_bytes()
        assert len(data) == shard.size and hashlib.sha256(data).hexdigest() == shard.sha256


def test_webdatasets_own_defaults_are_not_deterministic(monkeypatch):
    """Why the metadata is fixed: by default webdataset stamps each member with the time of writing
    and a user name, so two writes of the same sample differ."""
    def tar_at(now: float) -> bytes:
        monkeypatch.setattr(webdataset.writer.time, "time", lambda: now)
        out = io.BytesIO()
        with webdataset.TarWriter(out, encoder=False) as tar:
            tar.write({"__key__": "a", "json": b"{}"})
        return out.getvalue()

    first, later = tar_at(1_000_000.0), tar_at(2_000_000.0)
    assert first != later
    member = tarfile.open(fileobj=io.BytesIO(first)).getmembers()[0]
    assert (member.mtime, member.uname, member.mode) == (1_000_000, "bigdata", 0o444)


def test_webdatasets_shard_writer_would_split_elsewhere(tmp_path):
    """Why the splitting stays ours: webdataset's ShardWriter counts only the payload towards
    ``maxsize`` (not the 512-byte headers and the padding), so the same limit gives other shards:
    100 samples of one 100-byte member are 10,000 payload bytes but 102,400 tar bytes."""
    items = [(f"{i:03d}", {"json": bytes(100)}) for i in range(100)]
    written = []
    with webdataset.ShardWriter(str(tmp_path / "wds-%05d.tar"), maxsize=10_000, verbose=0, encoder=False,
                                post=written.append) as wds_writer:
        for key, members in items:
            wds_writer.write({"__key__": key, **members})
    ours = ShardWriter(tmp_path / "ours", "train", max_bytes=10_000)
    for key, members in items:
        ours.write(key, members)
    shards = ours.close()
    assert len(written) == 1 and len(shards) == 10 and {s.samples for s in shards} == {10}
    assert all(s.size <= 10_000 + 2 * tarfile.RECORDSIZE for s in shards)


def test_empty_shards_and_bad_samples(tmp_path):
    empty = ShardWriter(tmp_path, "test")
    assert empty.close() == [] and not list(tmp_path.iterdir())  # no file before the first sample
    (kept,) = ShardWriter(tmp_path, "test").close(keep_empty=True)
    assert kept.size == 10240 and kept.samples == 0
    tar = TarWriter(io.BytesIO())
    tar.write("b", {"json": b"{}"})
    for key, members, message in [("a", {"json": b""}, "strictly increasing"), ("c.d", {"json": b""}, "invalid WebDataset key"),
                                  ("c", {"JSON": b""}, "invalid member extension"),
                                  ("c", {"json": "text"}, "doesn't map to a bytes")]:
        with pytest.raises(ValueError, match=message):
            tar.write(key, members)
    with pytest.raises(ValueError, match="positive"):
        ShardWriter(tmp_path, "test", max_samples=0)


def test_a_failed_write_in_the_background_is_raised_in_the_caller():
    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(28, "No space left on device")

    tar = TarWriter(Full(), background=True)
    tar.write("a", {"json": b"x" * 20000})
    with pytest.raises(OSError, match="No space left"):
        tar.close()


def test_shard_patterns_name_every_shard_of_a_split():
    assert shard_pattern("test", 1) == "test-00000.tar"
    assert shard_pattern("train", 12) == "train-{00000..00011}.tar"
    assert webdataset.shardlists.expand_urls(shard_pattern("train", 3)) == [f"train-0000{i}.tar" for i in range(3)]
    with pytest.raises(ValueError):
        shard_pattern("test", 0)


def test_webdataset_is_a_dependency_and_importing_the_package_does_not_load_it():
    import subprocess
    import sys

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("webdataset>=") for d in dependencies)
    code = ("import sys, finer_datasets, finer_datasets.core.build, finer_datasets.hub.load; "
            "print(sorted(m for m in ('webdataset', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
