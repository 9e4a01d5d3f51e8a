"""Hostile network input (issue 19): image URLs and redirects that name this machine or an internal
network, servers that drip, model endpoints that drip or refuse everything, image caches that
point into the source, and numeric fetch options that cannot work.

Each case: the documented exit code, one ``error:`` line (or the counted refusal), no traceback,
the source byte-for-byte unchanged; a refused address receives zero requests.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest
from faultkit import finer_process, tree

from finer_datasets import get_builder
from finer_datasets.llm.client import SHOWN_FAILURES
from finer_datasets.testing.image_server import ImageServer
from finer_datasets.testing.scripted import ScriptedLLM, ScriptedServer

TUNING = get_builder("tuning")
SAMPLE = TUNING.sample_dir()
IMAGES = SAMPLE / "images"


def captions(n: int) -> list[str]:
    """Real sample captions (the scripted model turns them into tuples)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(SAMPLE / "data" / "train-00000-of-00002.parquet").to_pylist()
    return [r["caption"] for r in rows if r["caption"] and r["caption"].strip()][:n]


def pixmo_source(folder: Path, urls: list[str]) -> Path:
    """A Pixmo-cap layout source (one Parquet file, sample captions) listing ``urls``, with the
    sample's images beside it (what its local image server serves)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({"image_url": urls, "caption": (captions(len(urls)) * 2)[: len(urls)]}),
                   folder / "data" / "train-00000-of-00001.parquet")
    shutil.copytree(IMAGES, folder / "images")
    return folder


def to(target: str) -> str:
    """A URL of the sample's image server that redirects to ``target``."""
    return "https://pixmo-sample.test/to/" + urllib.parse.quote(target, safe="")


def tuning_llm():
    return ScriptedServer(ScriptedLLM(handlers=TUNING.scripted_handlers()))


def report_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["counts"]["fetch"]


# --- the address policy ------------------------------------------------------------------------
def test_metadata_and_internal_servers_receive_zero_requests(tmp_path, finer, monkeypatch):
    """ACCEPTANCE: source URLs and redirects at a loopback "metadata" and a loopback "internal"
    server; the bundled sample's own server (the one private address a --sample build may reach)
    redirects too. Without --allow-private-addresses neither server sees a request."""
    with ImageServer(IMAGES) as metadata, ImageServer(IMAGES) as internal, tuning_llm() as llm:
        meta = f"http://127.0.0.1:{metadata.port}/latest/meta-data/iam/security-credentials/"
        m, i = metadata.port, internal.port
        hostile = [meta, f"http://localhost:{i}/files/img001.jpg", f"http://2130706433:{i}/files/img002.jpg",
                   f"http://0x7f.0.0.1:{i}/files/img003.jpg", f"http://0177.0.0.1:{i}/files/img004.jpg",
                   f"http://[::ffff:127.0.0.1]:{i}/files/img006.jpg", f"http://127.1:{m}/latest/meta-data/",
                   to(meta), to(f"http://localhost:{i}/files/img008.jpg"), to(f"http://[::1]:{i}/files/img009.jpg"),
                   to("http://169.254.169.254/latest/meta-data/")]
        good = [f"https://pixmo-sample.test/files/img0{n}.jpg" for n in (10, 11, 12, 13)]
        source = pixmo_source(tmp_path / "src", hostile + good)
        before = tree(source)
        monkeypatch.setattr(type(TUNING), "sample_dir", lambda self: source)  # --sample serves this source
        out = tmp_path / "out"
        run = finer("build", "tuning", "--sample", "--out", out, "--no-progress", "--llm-base-url", llm.url,
                    "--llm-model", "scripted", "--max-skip-rate", "0.9")
        assert run.code == 0, run.err
        assert sum(metadata.requests.values()) == 0 and sum(internal.requests.values()) == 0
        fetch = report_of(out)  # (httpx itself rejects the octal form: invalid_url, no request either)
        assert fetch["dead_reasons"] == {"private_address": len(hostile) - 1, "invalid_url": 1}
        assert fetch["usable"] == len(good)
        skips = json.loads((out / "build_report.json").read_text())["skipped"]
        assert sum("private_address: " in s["detail"] for s in skips) == len(hostile) - 1

        # the flag lets them through: both servers are fetched (a local mirror)
        run = finer("build", "tuning", "--sample", "--out", tmp_path / "out2", "--no-progress", "--llm-base-url",
                    llm.url, "--llm-model", "scripted", "--max-skip-rate", "0.9", "--allow-private-addresses")
        assert run.code == 0, run.err
        assert metadata.requests["/latest/meta-data/iam/security-credentials/"] >= 1
        assert internal.requests["/files/img001.jpg"] == 1 and internal.requests["/files/img008.jpg"] == 1
        assert "private_address" not in report_of(tmp_path / "out2")["dead_reasons"]
    assert tree(source) == before and "Traceback" not in run.err


def test_a_source_build_refuses_loopback_unless_allowed(tmp_path, finer):
    with ImageServer(IMAGES) as internal, tuning_llm() as llm:
        source = pixmo_source(tmp_path / "src", [internal.url(f"/files/img00{n}.jpg") for n in (1, 2, 3)])
        before = tree(source)
        args = ["build", "tuning", "--source", source, "--no-progress", "--llm-base-url", llm.url, "--llm-model",
                "scripted", "--image-cache", tmp_path / "cache"]
        finer(*args, "--out", tmp_path / "o1").clean_failure(7, "produced no records", "image_unavailable 3")
        assert sum(internal.requests.values()) == 0
        assert finer(*args, "--out", tmp_path / "o2", "--allow-private-addresses").code == 0  # refusals: re-checked
        assert sum(internal.requests.values()) == 3
    assert tree(source) == before


# --- time -------------------------------------------------------------------------------------
def test_a_dripping_or_stalled_image_server_is_cut_at_the_fetch_timeout(tmp_path, finer):
    with ImageServer(IMAGES, slow_interval=0.5) as server, tuning_llm() as llm:
        urls = [server.url("/slow/img001.jpg"), server.url("/stall/60"), server.url("/files/img002.jpg"),
                server.url("/files/img003.jpg")]
        source = pixmo_source(tmp_path / "src", urls)
        started = time.monotonic()
        run = finer("build", "tuning", "--source", source, "--out", tmp_path / "out", "--no-progress",
                    "--llm-base-url", llm.url, "--llm-model", "scripted", "--allow-private-addresses",
                    "--fetch-timeout", "0.5", "--max-skip-rate", "0.9")
        elapsed = time.monotonic() - started
        assert run.code == 0, run.err
        assert report_of(tmp_path / "out")["dead_reasons"] == {"timeout": 2}
        for path in ("/slow/img001.jpg", "/stall/60"):  # 4 attempts, each cut at 0.5 s (+ backoff <= 2 s)
            starts = [t for t, _, p in server.log if p == path]
            assert len(starts) == 4 and all(b - a < 0.5 + 2.0 + 1.0 for a, b in itertools.pairwise(starts)), starts
    assert elapsed < 20, elapsed  # undripped: 12 kB at 2 bytes/s, an hour per attempt


def llm_build(finer, out, url, *extra):
    return finer("build", "compre_cap", "--sample", "--out", out, "--no-progress", "--llm-base-url", url,
                 "--llm-model", "scripted", *extra)


def test_a_dripping_model_endpoint_is_cut_at_the_llm_timeout(tmp_path, finer):
    with ScriptedServer(drip=0.2) as server:  # ~100 s per answer
        started = time.monotonic()
        run = llm_build(finer, tmp_path / "out", server.url, "--llm-timeout", "1", "--llm-max-retries", "0",
                        "--llm-breaker-seconds", "600", "--llm-concurrency", "2")
        elapsed = time.monotonic() - started
    run.clean_failure(5, "circuit breaker open", "no complete answer within 1 s")
    assert elapsed < 8 and not (tmp_path / "out").exists(), elapsed


def test_the_breaker_seconds_hold_in_wall_time_while_a_drip_is_in_progress(tmp_path, finer):
    with ScriptedServer(drip=0.2) as server:
        started = time.monotonic()
        run = llm_build(finer, tmp_path / "out", server.url, "--llm-timeout", "300", "--llm-breaker-seconds", "2")
        elapsed = time.monotonic() - started
    run.clean_failure(5, "circuit breaker open", "no successful answer for 2 s")
    assert elapsed < 8, elapsed


def test_a_dripping_model_list_is_cut_at_the_preflight(tmp_path, finer):
    with ScriptedServer(drip=0.2, drip_models=True) as server:
        started = time.monotonic()
        run = llm_build(finer, tmp_path / "out", server.url, "--llm-timeout", "1")
        elapsed = time.monotonic() - started
    run.clean_failure(5, "cannot reach the endpoint", "no complete answer within 1 s")
    assert elapsed < 10 and server.requests == 0, elapsed


# --- bounded, sanitized output ------------------------------------------------------------------
def test_an_endpoint_refusing_everything_is_exit_5_with_bounded_sanitized_warnings(tmp_path):
    key = "sk-test-" + os.urandom(12).hex()
    out = tmp_path / "out"
    body = json.dumps({"error": {"message": f"bad request: you sent Bearer {key}\n" + "x" * 5000}}).encode()
    with ScriptedServer(hook=lambda request, n: (400, body)) as server:  # the body echoes the key
        run = finer_process("build", "compre_cap", "--sample", "--out", out, "--no-progress", "--llm-base-url",
                            server.url, "--llm-model", "scripted", "--llm-concurrency", "2",
                            env={"OPENAI_API_KEY": key}, timeout=120)
    run.clean_failure(5, "circuit breaker open", "HTTP 400", "bad request: you sent Bearer [redacted]")
    warnings = [line for line in run.err.splitlines() if line.startswith("WARNING")]
    assert 0 < len(warnings) <= SHOWN_FAILURES + 2, run.err
    assert max(map(len, run.err.splitlines())) < 400, run.err
    assert key not in run.out + run.err and "xxxxxxxxxx" not in run.err
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or key.encode() not in path.read_bytes(), path
    assert not out.exists()


# --- the image cache --------------------------------------------------------------------------
@pytest.fixture
def sample_copy(tmp_path):
    source = tmp_path / "a" / "src"
    shutil.copytree(SAMPLE, source)
    return source


def cache_build(finer, source, out, *extra):
    return finer("build", "tuning", "--source", source, "--out", out, "--no-progress", "--replay",
                 SAMPLE / "transcript.jsonl", *extra)


@pytest.mark.parametrize("where, words", [
    ("source", "it is the source"), ("inside", "it sits inside the source"), ("parent", "it contains the source"),
])
def test_an_image_cache_at_in_or_around_the_source_is_refused(where, words, sample_copy, tmp_path, finer):
    cache = {"source": sample_copy, "inside": sample_copy / "data" / "cache", "parent": sample_copy.parent}[where]
    before = tree(sample_copy)
    cache_build(finer, sample_copy, tmp_path / "out", "--image-cache", cache).clean_failure(6, "--image-cache", words)
    assert tree(sample_copy) == before and not (tmp_path / "out").exists()


def test_a_default_image_cache_planted_as_a_link_into_the_source_is_refused(sample_copy, tmp_path, finer):
    out = tmp_path / "out"
    out.with_name("out.images").symlink_to(sample_copy / "data", target_is_directory=True)
    before = tree(sample_copy)
    cache_build(finer, sample_copy, out).clean_failure(6, "out.images", "sits inside the source", "resolves to")
    assert tree(sample_copy) == before


def test_links_inside_the_image_cache_are_refused(sample_copy, tmp_path, finer):
    before = tree(sample_copy)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "files").symlink_to(sample_copy / "images", target_is_directory=True)
    cache_build(finer, sample_copy, tmp_path / "o1", "--image-cache", cache).clean_failure(6, "files", "link")
    (cache / "files").unlink()
    (cache / "fetch").mkdir()
    (cache / "fetch" / "index.sqlite").symlink_to(sample_copy / "data" / "train-00000-of-00002.parquet")
    cache_build(finer, sample_copy, tmp_path / "o2", "--image-cache", cache).clean_failure(6, "index.sqlite",
                                                                                        "symbolic link")
    assert tree(sample_copy) == before


def test_an_image_cache_that_is_a_file_is_a_usage_error(sample_copy, tmp_path, finer):
    cache = tmp_path / "cache.bin"
    cache.write_bytes(b"mine")
    cache_build(finer, sample_copy, tmp_path / "out", "--image-cache", cache).clean_failure(2, "not a folder")
    assert cache.read_bytes() == b"mine"


@pytest.mark.parametrize("option, value", [
    ("--fetch-concurrency", "0"), ("--fetch-per-host", "-1"), ("--fetch-concurrency", "1.5"),
    ("--fetch-timeout", "0"), ("--fetch-timeout", "nan"), ("--fetch-timeout", "-3"), ("--fetch-per-host", "x"),
])
def test_numeric_fetch_options_are_checked_at_parse_time(option, value, sample_copy, tmp_path, finer):
    run = cache_build(finer, sample_copy, tmp_path / "out", option, value)
    run.clean_failure(2, option, "must be a positive")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.images").exists()
