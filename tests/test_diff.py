"""`finer diff A B`: a pure comparison of two snapshots (counts, pairs/tuples by id, question-id
stability, bytes per file group) and its command line over folders, release repositories at a tag
(read with git archive, the repository untouched) and Hub ids at a revision (olah on 127.0.0.1)."""

import json
import subprocess

import pytest

from finer_datasets.hub.diff import diff, render, snapshot
from finer_datasets.hub.release import release
from test_hub import REPO, hub_env, olah, versions  # noqa: F401  (olah: the local Hub of the Hub tests)
from test_release import CompreCapNext, finer, git, tree_files


def pair(pid, setting="multi_obj", question="Is there a cat?", options=("A1", "B1", "C1", "D1", "E1"), answer="A"):
    q = {"question_id": f"{pid}_pos", "question": question, "options": list(options), "option_types": ["affirm"] * 5,
         "answer": answer}
    return {"pair_id": pid, "setting": setting, "k": 1, "negated_index": 0, "positive": q,
            "negative": {**q, "question_id": f"{pid}_neg", "question": "Is there a dog?"}}


def image(pairs, image_id="img1"):
    return {"dataset": "toy", "image_id": image_id, "image_file": f"{image_id}.jpg", "pairs": pairs}


INFO = {"source": "a", "dataset": "toy", "version": "1.0.0", "manifest_digest": "d1", "layout": "per-image/1"}
FILES = {"data/test-00000.tar": ("s1", 1000), "README.md": ("c1", 100), "manifest.json": ("m1", 50)}


def test_pairs_added_removed_and_changed_by_id():
    old = [image([pair("p1"), pair("p2", "wh"), pair("p3")])]
    new_pairs = [pair("p1"), pair("p2", "wh", options=("B1", "A1", "C1", "D1", "E1"), answer="B"), pair("p4", "multi_rel")]
    new_files = {**FILES, "data/test-00000.tar": ("s2", 1200), "README.md": ("c1", 100)}
    result = diff(snapshot(INFO, old, FILES), snapshot({**INFO, "version": "1.1.0"}, [image(new_pairs)], new_files))
    assert result["counts"] == {"multi_obj": {"old": 2, "new": 1}, "multi_rel": {"old": 0, "new": 1},
                                "wh": {"old": 1, "new": 1}}
    items = result["items"]
    assert (items["added"], items["removed"], items["changed"], items["unchanged"]) == (1, 1, 1, 1)
    assert items["added_examples"] == ["p4"] and items["removed_examples"] == ["p3"]
    assert items["changed_fields"] == {"negative.answer": 1, "negative.options": 1, "positive.answer": 1,
                                       "positive.options": 1}
    assert items["changed_examples"][0]["fields"]["positive.answer"] == {"old": "A", "new": "B"}
    q = result["questions"]
    assert (q["stable"], q["common"], q["unstable"], q["by_cause"]["option order"]) == (False, 4, 2, 2)
    assert result["bytes"]["shards"] == {"old": {"files": 1, "bytes": 1000}, "new": {"files": 1, "bytes": 1200}}
    assert result["files_changed"] == ["data/test-00000.tar"] and not result["identical"]
    text = render(result)
    assert "1 added, 1 removed, 1 changed, 1 unchanged" in text and "question ids: NOT stable" in text
    assert "option order 2" in text and "e.g. p2: negative.answer 'A' -> 'B'" in text


def test_question_text_and_option_text_changes_are_told_apart():
    reworded = pair("p1", question="Can you see a cat?")
    retexted = pair("p2", options=("A1", "B1", "C1", "D1", "Z9"))
    result = diff(snapshot(INFO, [image([pair("p1"), pair("p2")])], FILES),
                  snapshot(INFO, [image([reworded, retexted])], FILES))
    assert result["questions"]["by_cause"] == {"question text": 1, "option text": 2, "option order": 0}
    same = diff(snapshot(INFO, [image([pair("p1")])], FILES), snapshot(INFO, [image([pair("p1")])], FILES))
    assert same["identical"] and same["questions"]["stable"] and same["items"]["changed"] == 0
    assert "question ids: stable (2 ids" in render(same) and "content: identical" in render(same)


def test_a_move_to_another_image_is_a_change_and_old_layouts_compare():
    moved = diff(snapshot(INFO, [image([pair("p1")], "img1")], FILES), snapshot(INFO, [image([pair("p1")], "img2")], FILES))
    assert moved["items"]["changed_fields"] == {"image_file": 1, "image_id": 1}
    legacy = {**pair("p1"), "dataset": "toy", "image_id": "img1", "image_file": "img1.jpg"}  # 1.x: one record per pair
    assert diff(snapshot(INFO, [legacy], FILES), snapshot(INFO, [image([pair("p1")])], FILES))["items"]["changed"] == 0


def tuning_record(image_id, tuples):
    return {"dataset": "tuning", "image_id": image_id, "tuples": tuples}


def tup(tid, kind="obj", selected=True, question="Is there a ball?"):
    return {"id": tid, "type": kind, "query": "positive", "template": 1, "question": question, "chosen": "Yes.",
            "rejected": "No.", "selected": selected}


def test_tuning_counts_selected_tuples_per_subset():
    old = [tuning_record("i1", [tup("t1"), tup("t2", "attr"), tup("t3", selected=False)])]
    new = [tuning_record("i1", [tup("t1", question="Do you see a ball?"), tup("t2", "attr", selected=False),
                                tup("t3", selected=True)])]
    result = diff(snapshot(INFO, old, FILES), snapshot(INFO, new, FILES))
    assert (result["unit"], result["by"]) == ("selected tuples", "subset")
    assert result["counts"] == {"attr": {"old": 1, "new": 0}, "obj": {"old": 1, "new": 2}}
    assert (result["items"]["added"], result["items"]["removed"], result["items"]["changed"]) == (1, 1, 1)
    assert result["questions"]["by_cause"]["question text"] == 1
    assert "selected tuples per subset:" in render(result)


def test_a_first_release_has_nothing_before_it():
    result = diff(None, snapshot(INFO, [image([pair("p1")])], FILES))
    assert result["old"] is None and result["items"]["added"] == 1 and result["questions"] is None
    assert "old: (nothing: first release)" in render(result)


# ------------------------------------------------------------------ command line


@pytest.fixture(scope="module")
def repo(tmp_path_factory, sample_build, sample_dir):
    """A release repository holding v2.1.0 (the sample) and v2.2.0 (seed 1), and the v2.2.0 folder."""
    root = tmp_path_factory.mktemp("diff")
    v2 = build_next(root / "v2.2", sample_dir)
    release(sample_build.out, to=root / "repo")
    release(v2, to=root / "repo")
    return root / "repo", v2


def build_next(out, sample_dir):
    from finer_datasets import build

    return build(CompreCapNext(), source=sample_dir, out=out, seed=1, progress=False).out


def test_diff_of_two_tags_leaves_the_repository_untouched(repo, sample_build):
    path, v2 = repo
    before = (git(path, "rev-parse", "HEAD"), git(path, "status", "--porcelain"), tree_files(path),
              (path / ".git" / "index").read_bytes())
    run = finer("diff", f"{path}@v2.1.0", f"{path}@v2.2.0")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert f"old: {path}@v2.1.0  FINER-CompreCap (compre_cap) 2.1.0" in out
    assert f"new: {path}@v2.2.0  FINER-CompreCap (compre_cap) 2.2.0" in out
    assert sample_build.manifest["digest"] in out and json.loads((v2 / "manifest.json").read_text())["digest"] in out
    assert "content: differs" in out and "289 changed" in out and "question ids: NOT stable" in out
    after = (git(path, "rev-parse", "HEAD"), git(path, "status", "--porcelain"), tree_files(path),
             (path / ".git" / "index").read_bytes())
    assert after == before


def test_diff_json_says_the_same_as_the_text(repo, sample_build):
    path, v2 = repo
    run = finer("diff", f"{path}@v2.1.0", v2, "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["old"]["version"] == "2.1.0" and result["new"]["version"] == "2.2.0"
    assert result["old"]["manifest_digest"] == sample_build.manifest["digest"]
    assert result["total"] == {"old": 289, "new": 289} and result["items"]["changed"] == 289
    assert set(result["counts"]) == {"multi_obj", "multi_attr", "multi_rel", "wh"}
    assert result["questions"]["stable"] is False and set(result["bytes"]) == {"shards", "card", "other"}
    assert render(result) in finer("diff", f"{path}@v2.1.0", v2).stdout


def test_a_folder_against_itself_is_identical(sample_build, tmp_path):
    run = finer("diff", sample_build.out, sample_build.out)
    assert run.returncode == 0, run.stderr
    assert "content: identical" in run.stdout and "0 added, 0 removed, 0 changed, 289 unchanged" in run.stdout
    assert "question ids: stable (578 ids" in run.stdout


def test_tuning_versions_compare_by_subset(tmp_path):
    from test_tuning_build import build_tuning

    full = build_tuning(tmp_path / "full").out
    capped = build_tuning(tmp_path / "capped", max_tuples=40).out
    run = finer("diff", full, capped, "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["by"] == "subset" and result["total"] == {"old": 120, "new": 40}
    assert set(result["counts"]) == {"obj", "attr", "rel", "wh"} and result["items"]["removed"] >= 80


def test_sides_that_cannot_be_read(repo, sample_build, tmp_path):
    path, _ = repo
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(sample_build.out), str(broken)], check=True)
    (broken / "README.md").write_text("edited")
    plain = tmp_path / "plain"
    plain.mkdir()
    cases = [((f"{path}@v9.9.9", sample_build.out), 2, "has no revision 'v9.9.9' (its version tags: v2.1.0, v2.2.0)"),
             ((f"{plain}@v2.1.0", sample_build.out), 2, "is not a git repository"),
             ((tmp_path / "missing", sample_build.out), 2, "no such dataset folder"),
             ((broken, sample_build.out), 3, "does not verify"),
             ((f"{path}@", sample_build.out), 2, "give REPO_DIR@REVISION")]
    for args, code, message in cases:
        run = finer("diff", *args)
        assert run.returncode == code and run.stderr.count("\n") == 1 and message in run.stderr, (args, run.stderr)


def test_diff_of_two_hub_revisions_over_http(olah, tmp_path):  # noqa: F811
    url, _ = olah
    run = finer("diff", f"{REPO}@v2.1.0", f"{REPO}@v2.2.0", "--json", env=hub_env(url, tmp_path / "home"))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["old"]["revision"], result["new"]["revision"]) == ("v2.1.0", "v2.2.0")
    assert (result["old"]["version"], result["new"]["version"]) == ("2.1.0", "2.2.0")
    assert result["items"]["changed"] == 289
