"""Every load is of what is there now: after a rebuild into the same folder (another seed), the
`datasets` cache is never served in place of the new shards, whichever loader reads the folder.

`datasets` keys its cache of a local folder on the folder's name and a hash of the card's YAML, not
on the files; the card's config therefore carries the shards' digest (manifest `data_digest`)."""

import json
import subprocess
import sys
import tarfile

import datasets

from finer_datasets import load_finer
from finer_datasets.core.manifest import data_digest, read_manifest
from finer_datasets.mcq.records import pair_rows, question_rows

datasets.disable_progress_bars()

LOAD = """
import json, sys, datasets
from finer_datasets import load_finer
datasets.disable_progress_bars()
ds = datasets.load_dataset(sys.argv[1], split="test").cast_column("jpg", datasets.Image(decode=False))
questions = load_finer(sys.argv[1], "questions", split="test")
print(json.dumps({"records": [r["json"] for r in ds], "images": [r["jpg"]["bytes"].hex() for r in ds],
                  "questions": [[q["question_id"], q["question"], q["options"], q["answer"]] for q in questions]}))
"""


def shards(folder):
    """The records and image bytes exactly as the tar shards hold them, in shard order."""
    records, images = [], []
    for path in sorted((folder / "data").glob("test-*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                data = tar.extractfile(member).read()
                (records.append(json.loads(data)) if member.name.endswith(".json") else images.append(data))
    return records, images


def expected_questions(records):
    return [[q["question_id"], q["question"], q["options"], q["answer"]]
            for r in records for p in pair_rows(r) for q in question_rows(p)]


def finer(*args):
    run = subprocess.run([sys.executable, "-m", "finer_datasets.cli", *args, "--no-progress"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr


def load_in_subprocess(folder):
    run = subprocess.run([sys.executable, "-c", LOAD, str(folder)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def check_matches_shards(folder, loaded):
    records, images = shards(folder)
    assert loaded["records"] == records
    assert [bytes.fromhex(h) for h in loaded["images"]] == images
    assert loaded["questions"] == expected_questions(records)


def test_a_rebuild_with_another_seed_is_what_every_loader_returns(tmp_path):
    out = tmp_path / "ds"
    finer("build", "compre_cap", "--sample", "--out", str(out))
    first = load_in_subprocess(out)
    check_matches_shards(out, first)
    in_process = [[q["question_id"], q["question"], q["options"], q["answer"]]
                  for q in load_finer(str(out), "questions", split="test")]
    assert in_process == first["questions"]

    finer("build", "compre_cap", "--sample", "--out", str(out), "--seed", "7", "--overwrite")
    second = load_in_subprocess(out)
    check_matches_shards(out, second)
    assert second["questions"] != first["questions"]  # the seed changed the options' order
    again = [[q["question_id"], q["question"], q["options"], q["answer"]]
             for q in load_finer(str(out), "questions", split="test")]
    assert again == second["questions"]


def test_the_card_config_carries_the_digest_of_the_shards(sample_build):
    manifest = read_manifest(sample_build.out)
    assert manifest["data_digest"] == data_digest(manifest["files"])
    card = (sample_build.out / "README.md").read_text("utf-8")
    assert f"data sha256:{manifest['data_digest']}" in card.split("\n---\n")[0]
    # a shard's bytes change => the digest (and so the datasets cache key) changes
    files = [dict(f) for f in manifest["files"]]
    shard = next(f for f in files if f["path"].startswith("data/"))
    shard["sha256"] = "0" * 64
    assert data_digest(files) != manifest["data_digest"]
    assert data_digest([f for f in files if not f["path"].startswith("data/")] + [shard]) == data_digest(files)


def test_a_release_repository_loads_each_revision_as_its_own_folder(tmp_path, sample_build):
    """`finer release` twice into one repo, then load_finer(repo, revision=...) and `finer score repo
    --revision`: each revision gives its own rows (the working tree is the newest; it is never read)."""
    repo = tmp_path / "releases"
    second = tmp_path / "second"
    finer("build", "compre_cap", "--sample", "--out", str(second), "--seed", "3", "--version-label", "lab.1")
    for folder in (sample_build.out, second):
        run = subprocess.run([sys.executable, "-m", "finer_datasets.cli", "release", str(folder), "--to", str(repo)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    for revision, folder in (("v2.1.0", sample_build.out), ("v2.1.0+lab.1", second)):
        records, _ = shards(folder)
        loaded = load_finer(str(repo), "images", split="test", revision=revision)
        assert list(loaded["json"]) == records, revision
        assert [[q["question_id"], q["question"], q["options"], q["answer"]]
                for q in load_finer(str(repo), "questions", split="test", revision=revision)] == expected_questions(records)
    head = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert head == ""  # the repository was only read


def test_a_revision_of_a_plain_folder_or_an_unknown_tag_is_one_line(tmp_path, sample_build):
    import pytest

    from finer_datasets.errors import UsageError

    with pytest.raises(UsageError, match="applies to Hub ids and release repositories"):
        load_finer(str(sample_build.out), "questions", split="test", revision="v2.1.0")
    repo = tmp_path / "releases"
    subprocess.run([sys.executable, "-m", "finer_datasets.cli", "release", str(sample_build.out), "--to", str(repo)],
                   capture_output=True, check=True)
    with pytest.raises(UsageError, match=r"has no revision 'v9.9.9' \(its version tags: v2.1.0\)"):
        load_finer(str(repo), "questions", split="test", revision="v9.9.9")
