"""Proof over HTTP: a local Hub (olah, offline, 127.0.0.1) serving released versions to the real
`datasets`/`huggingface_hub` clients, and uploads tested at their HTTP boundary (fake_hub.py)."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import datasets
import pytest
from fake_hub import FakeHub
from huggingface_hub import HfApi
from test_release import CompreCapNext

from finer_datasets import build, load_finer
from finer_datasets.hub.publish import plan_publish, publish
from finer_datasets.hub.release import ReleaseError, release

datasets.disable_progress_bars()
REPO = "finer/compre_cap"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LEGACY = Path(__file__).parent / "fixtures" / "compre_cap_v1.0.0_dummy"  # a 1.0.0 build: one sample per pair


@pytest.fixture(scope="module")
def versions(tmp_path_factory, sample_build, sample_dir):
    root = tmp_path_factory.mktemp("hub")
    v21 = build(CompreCapNext(), source=sample_dir, out=root / "v2.2", seed=1, progress=False).out
    return {"v2.1.0": sample_build.out, "v2.2.0": v21}


@pytest.fixture(scope="module")
def olah(tmp_path_factory, versions):
    """olah in offline mode serving the release repo (built with `finer release`) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("olah")
    for folder in [LEGACY, *versions.values()]:
        release(folder, to=root / "mirrors" / "datasets" / REPO)
    with olah_server(root, REPO) as url:
        yield url, root


@contextlib.contextmanager
def olah_server(root: Path, repo: str):
    """olah, offline, on 127.0.0.1, serving the git repositories of ``root/mirrors`` (``datasets/<repo>``)."""
    port = free_port()
    (root / "olah.toml").write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{root / "cache"}"\n'
        f'mirrors-path = ["{root / "mirrors"}"]\n[accessibility]\noffline = true\n'
    )
    cmd = [sys.executable, "-c", "import sys; from olah.server import cli; sys.argv = ['olah-cli', '-c', sys.argv[1]]; cli()",
           str(root / "olah.toml")]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/datasets/{repo}/refs", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("olah did not start")
            time.sleep(0.3)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


LOADER = """
import json, sys, datasets
from finer_datasets import load_finer
datasets.disable_progress_bars()
repo, out = sys.argv[1], {}
for revision in ("v2.1.0", "v2.2.0"):
    ds = datasets.load_dataset(repo, split="test", revision=revision)
    out[revision] = [[p["pair_id"], p["positive"]["options"]] for r in ds["json"] for p in r["pairs"]]
    out[revision + "/size"] = list(ds[0]["jpg"].size)
    out[revision + "/questions"] = list(load_finer(repo, "questions", split="test", setting="wh", revision=revision)["question_id"])
stream = datasets.load_dataset(repo, split="test", revision="v2.1.0", streaming=True)
out["stream"] = [[p["pair_id"], p["positive"]["options"]] for r in stream for p in r["json"]["pairs"]]
out["default_config"] = datasets.load_dataset(repo, revision="v2.2.0")["test"].num_rows
legacy = datasets.load_dataset(repo, split="multi_obj", revision="v1.0.0")  # the old layout, by its tag
out["legacy"] = [r["pair_id"] for r in legacy["json"]]
out["legacy/pairs"] = list(load_finer(repo, "pairs", setting="multi_obj", revision="v1.0.0")["test"]["pair_id"])
print(json.dumps(out))
"""


def hub_env(url: str, home: Path) -> dict[str, str]:
    return {**os.environ, "HF_ENDPOINT": url, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_TOKEN": "hf_test_token_do_not_print"}


def local(folder: Path):
    return [[p["pair_id"], p["positive"]["options"]] for r in datasets.load_dataset(str(folder), split="test")["json"]
            for p in r["pairs"]]


def test_load_dataset_over_http_matches_local_folders(olah, versions):
    url, root = olah
    run = subprocess.run([sys.executable, "-c", LOADER, REPO], capture_output=True, text=True,
                         env=hub_env(url, root / "hf-home"), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    for revision, folder in versions.items():
        assert got[revision] == local(folder), revision
        assert got[f"{revision}/size"] == [320, 240]
        wh = list(load_finer(str(folder), "questions", split="test", setting="wh")["question_id"])
        assert got[f"{revision}/questions"] == wh and wh
    # the versions coexist and each revision returns its own rows
    assert got["v2.1.0"] != got["v2.2.0"]
    assert got["stream"] == local(versions["v2.1.0"])
    assert got["default_config"] == 12
    # the release before the per-image layout keeps loading by its tag, through both loaders
    legacy = datasets.load_dataset(str(LEGACY), split="multi_obj")
    assert got["legacy"] == [r["pair_id"] for r in legacy["json"]] == got["legacy/pairs"] and got["legacy"]


REVISIONS = """
import json, os, sys, datasets
from finer_datasets import load_finer
datasets.disable_progress_bars()
out = {}
for revision in sys.argv[2:]:
    if os.environ["HF_HUB_OFFLINE"] == "0":  # offline, datasets serves its newest cache whatever the revision
        ds = datasets.load_dataset(sys.argv[1], split="test", revision=revision)
        out[revision] = [[p["pair_id"], p["positive"]["options"]] for r in ds["json"] for p in r["pairs"]]
    images = load_finer(sys.argv[1], "images", split="test", revision=revision)
    out[revision + "/finer"] = [[p["pair_id"], p["positive"]["options"]] for r in images["json"] for p in r["pairs"]]
    out[revision + "/questions"] = list(load_finer(sys.argv[1], "questions", split="test", revision=revision)["options"])
print(json.dumps(out))
"""


def test_two_revisions_never_share_a_cache_online_or_offline(olah, versions, tmp_path):
    """Load v2.2.0 then v2.1.0 into one cache, then again with the Hub offline (from the caches only):
    each revision gives its own rows every time. Offline, `datasets.load_dataset` itself ignores the
    revision (it serves its newest cache of the repo); `load_finer` resolves the revision through the
    Hub cache's refs and loads that snapshot."""
    url, root = olah
    home = tmp_path / "hf-home"
    expected = {rev: local(folder) for rev, folder in versions.items()}
    questions = {rev: list(load_finer(str(folder), "questions", split="test")["options"]) for rev, folder in versions.items()}
    for offline in ("0", "1"):
        env = {**hub_env(url, home), "HF_HUB_OFFLINE": offline, "HF_DATASETS_OFFLINE": offline}
        run = subprocess.run([sys.executable, "-c", REVISIONS, REPO, "v2.2.0", "v2.1.0"], capture_output=True, text=True,
                             env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        got = json.loads(run.stdout.strip().splitlines()[-1])
        for rev in versions:
            if offline == "0":
                assert got[rev] == expected[rev], (offline, rev)
            assert got[rev + "/finer"] == expected[rev], (offline, rev)
            assert got[rev + "/questions"] == questions[rev], (offline, rev)


def test_score_a_hub_id_at_a_revision_over_http(olah, versions, tmp_path, sample_build):
    url, root = olah
    predictions = tmp_path / "p.jsonl"
    with predictions.open("w") as f:
        for r in datasets.load_dataset(str(versions["v2.1.0"]), split="test")["json"]:
            for p in r["pairs"]:
                for q in (p["positive"], p["negative"]):
                    f.write(json.dumps({"question_id": q["question_id"], "response": q["answer"]}) + "\n")
    run = cli(["score", REPO, "--revision", "v2.1.0", "--predictions", str(predictions), "--out", str(tmp_path / "r")],
              url, root / "hf-home")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["overall"]["paired_accuracy"] == 100.0
    assert report["dataset"]["version"] == "2.1.0" and report["dataset"]["revision"] == "v2.1.0"
    assert report["dataset"]["manifest_digest"] == sample_build.manifest["digest"] and report["dataset"]["verified"]


# --- uploads, at the HTTP boundary -------------------------------------------------------------


def test_publish_creates_uploads_verifies_and_tags(versions):
    with FakeHub() as hub:
        api = HfApi(endpoint=hub.url, token="hf_test_token")
        plan = plan_publish(versions["v2.1.0"], REPO, private=True)
        commit = publish(plan, api=api)
        repo = hub.repos[REPO]
        assert repo.private and repo.tags["v2.1.0"][0] == commit
        assert repo.tags["v2.1.0"][1].startswith("FINER-CompreCap 2.1.0")
        folder = versions["v2.1.0"]
        assert hub.files(REPO, "v2.1.0") == {p.relative_to(folder).as_posix(): p.read_bytes()
                                             for p in folder.rglob("*") if p.is_file()}
        assert all(h.get("authorization") == "Bearer hf_test_token" for _, _, h, _ in hub.requests)
        # the next version goes on top; the first stays reachable by its tag
        commit2 = publish(plan_publish(versions["v2.2.0"], REPO), api=api)
        assert commit2 != commit and set(repo.tags) == {"v2.1.0", "v2.2.0"}
        assert hub.files(REPO, "v2.1.0")["manifest.json"] != hub.files(REPO, "v2.2.0")["manifest.json"]


def test_publish_refuses_an_existing_tag(versions):
    with FakeHub() as hub:
        api = HfApi(endpoint=hub.url, token="hf_test_token")
        plan = plan_publish(versions["v2.1.0"], REPO)
        publish(plan, api=api)
        commits = len(hub.repos[REPO].commits)
        with pytest.raises(ReleaseError, match="already has tag v2.1.0"):
            publish(plan, api=api)
        assert len(hub.repos[REPO].commits) == commits


def test_publish_does_not_tag_an_upload_that_differs_from_the_manifest(versions):
    with FakeHub(drop_paths=("data/test-00000.tar",)) as hub:
        api = HfApi(endpoint=hub.url, token="hf_test_token")
        with pytest.raises(ReleaseError, match="data/test-00000.tar: missing on the Hub"):
            publish(plan_publish(versions["v2.1.0"], REPO), api=api)
        assert hub.repos[REPO].tags == {}


def cli(args, url, home):
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *args], capture_output=True, text=True,
                          env=hub_env(url, home), timeout=120)


def test_cli_dry_run_touches_nothing_and_the_token_is_never_printed(versions, tmp_path):
    with FakeHub() as hub:
        dry = cli(["publish", str(versions["v2.1.0"]), "--repo", REPO, "--dry-run"], hub.url, tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert hub.requests == []
        assert "tag:     v2.1.0" in dry.stdout and "data/test-00000.tar" in dry.stdout
        done = cli(["publish", str(versions["v2.1.0"]), "--repo", REPO], hub.url, tmp_path)
        assert done.returncode == 0, done.stderr
        again = cli(["publish", str(versions["v2.1.0"]), "--repo", REPO], hub.url, tmp_path)
        assert again.returncode == 4 and "immutable" in again.stderr
        assert hub.requests and all(h.get("authorization") == "Bearer hf_test_token_do_not_print"
                                    for _, _, h, _ in hub.requests)
        for run in (dry, done, again):
            assert "hf_test_token_do_not_print" not in run.stdout + run.stderr
