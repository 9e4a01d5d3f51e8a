"""`finer build compre_cap --from-release ORG/NAME`: the authors' Hub copy (Parquet with embedded
images, split names of their scripts) served by a local Hub (olah, offline, 127.0.0.1) to the real
`huggingface_hub` client; the build equals the one from their CSV tables, shard for shard."""

import json
import subprocess
import sys

import pytest
from test_hub import hub_env, olah_server
from test_release_import import FIXTURE, finer, hub_layout

REPO = "authors/finer-comprecap"


def git(folder, *args):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("olah-release")
    repo = hub_layout(root / "mirrors" / "datasets" / REPO)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the authors' release")
    commit = git(repo, "rev-parse", "HEAD").strip()
    with olah_server(root, REPO) as url:
        yield url, root, commit


def test_a_hub_id_builds_what_the_csv_tables_build(hub, tmp_path):
    url, root, commit = hub
    env = hub_env(url, tmp_path / "hf-home")
    out = tmp_path / "from-hub"
    run = subprocess.run([sys.executable, "-m", "finer_datasets.cli", "build", "compre_cap", "--from-release", REPO,
                          "--out", str(out), "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    local = tmp_path / "from-csv"
    assert finer("build", "compre_cap", "--from-release", FIXTURE, "--out", local, "--no-progress").returncode == 0
    shards = sorted(p.name for p in (local / "data").iterdir())
    assert shards == sorted(p.name for p in (out / "data").iterdir())
    assert all((out / "data" / s).read_bytes() == (local / "data" / s).read_bytes() for s in shards)
    manifest = json.loads((out / "manifest.json").read_text())
    release = manifest["provenance"]["release"]
    assert (release["from"], release["hub_revision"]) == (REPO, commit)
    assert manifest["builder"]["options"] == {"from_release": REPO}
    assert f"--from-release {REPO}" in (out / "README.md").read_text()


def test_an_unknown_hub_id_is_one_line(hub, tmp_path):
    url, root, _ = hub
    run = subprocess.run([sys.executable, "-m", "finer_datasets.cli", "build", "compre_cap", "--from-release",
                          "authors/nothing-here", "--out", str(tmp_path / "out"), "--no-progress"],
                         capture_output=True, text=True, env=hub_env(url, tmp_path / "hf-home"), timeout=300)
    assert run.returncode == 2 and run.stderr.startswith("error: authors/nothing-here")
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()
