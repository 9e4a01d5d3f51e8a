"""FINER-DOCCI samples its pairs as the paper's Table 9 counts it: one `multi_obj` pair per image,
one `multi_attr` pair per object, one `multi_rel` pair per subject, k = min(K, n); `--sampling
per-k` gives CompreCap's rule. Both from the command line, on the bundled sample, offline."""

import json
import subprocess
import sys
from collections import Counter

import pytest

from finer_datasets.core.manifest import verify
from finer_datasets.core.reader import iter_records

LIMITS = {"multi_obj": 6, "multi_attr": 5, "multi_rel": 3}


def finer(*args):
    """The command line in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("docci-sampling")
    default = finer("build", "docci", "--sample", "--out", root / "default")
    assert default.returncode == 0, default.stderr
    per_k = finer("build", "docci", "--sample", "--sampling", "per-k", "--out", root / "per-k")
    assert per_k.returncode == 0, per_k.stderr
    return root / "default", root / "per-k"


def records(folder):
    return list(iter_records(folder, verify(folder)))


def groups(record):
    """The sizes n of the groups the paper samples from, read off the record's scene graph:
    distinct object names; each object's attributes; each subject's distinct related objects."""
    graph = record["scene_graph"]
    names = {o["id"]: o["name"].lower() for o in graph["objects"]}
    related: dict[str, set[str]] = {}
    for rel in graph["relations"]:
        if rel["negatives"]:
            related.setdefault(rel["subject"], set()).add(names[rel["object"]])
    attrs = {o["id"]: n for o in graph["objects"] if (n := sum(bool(a["negatives"]) for a in o["attributes"]))}
    return {"multi_obj": {"": len({names[o["id"]] for o in graph["objects"] if o["negatives"]})},
            "multi_attr": attrs, "multi_rel": {s: len(o) for s, o in related.items()}}


def pairs_of(record, setting):
    return {p["pair_id"]: p for p in record["pairs"] if p["setting"] == setting}


def test_the_default_asks_one_pair_per_image_object_and_subject_with_k_min_of_the_limit_and_n(builds):
    default, _ = builds
    manifest = json.loads((default / "manifest.json").read_text())
    recs = records(default)
    assert manifest["builder"]["options"]["sampling"] == "table9"
    expected = {setting: Counter() for setting in LIMITS}
    for record in recs:
        for setting, sizes in groups(record).items():
            ks = sorted(min(LIMITS[setting], n) for n in sizes.values() if n)
            assert sorted(p["k"] for p in pairs_of(record, setting).values()) == ks, (record["image_id"], setting)
            expected[setting].update(ks)
        assert len(pairs_of(record, "multi_obj")) == 1
    counts = manifest["counts"]
    assert counts["pairs"]["multi_obj"] == len(recs) == counts["images"]  # one multi_obj pair per image
    for setting, histogram in expected.items():
        assert counts["pairs_by_k"][setting] == {str(k): n for k, n in sorted(histogram.items())}
    assert sum(expected["multi_attr"].values()) == sum(len(groups(r)["multi_attr"]) for r in recs)  # per object
    assert sum(expected["multi_rel"].values()) == sum(len(groups(r)["multi_rel"]) for r in recs)  # per subject


def test_per_k_asks_every_k_and_holds_every_default_pair(builds):
    default, per_k = builds
    assert json.loads((per_k / "manifest.json").read_text())["builder"]["options"]["sampling"] == "per-k"
    ours = {r["image_id"]: r for r in records(default)}
    for record in records(per_k):
        for setting, sizes in groups(record).items():
            ks = sorted(k for n in sizes.values() for k in range(1, min(LIMITS[setting], n) + 1))
            assert sorted(p["k"] for p in pairs_of(record, setting).values()) == ks
        mine = {p["pair_id"]: p for p in ours[record["image_id"]]["pairs"]}
        theirs = {p["pair_id"]: p for p in record["pairs"]}
        assert mine.items() <= theirs.items()  # the same pair, identical, under both policies
    # the policy decides only which pairs are made: the model was asked the same prompts
    assert (default / "transcript.jsonl").read_bytes() == (per_k / "transcript.jsonl").read_bytes()


def test_the_card_records_the_policy_and_sets_each_k_beside_table_9(builds):
    default, per_k = builds
    manifest = json.loads((default / "manifest.json").read_text())
    card = (default / "README.md").read_text()
    assert "Sampling `table9`: one pair per image (`multi_obj`)" in card and "--sampling table9" in card
    assert "### Compared with the paper" in card and "## Differences from the paper" in card
    by_k, total = manifest["counts"]["pairs_by_k"]["multi_obj"], manifest["counts"]["pairs"]["multi_obj"]
    six = by_k.get("6", 0)
    assert f"| `multi_obj` | 6 | {six} | {100 * six / total:.1f}% | 1,676 | 33.5% |" in card
    assert "| `multi_rel` | 3 | " in card and "| 199 | 3.4% |" in card
    assert "| objects | " in card and "| 24,528 | 4.91 |" in card
    assert "| `multi_attr` | " in card and "| 14,324 | 28,630 |" in card
    other = (per_k / "README.md").read_text()
    assert "Sampling `per-k`: one pair for every k" in other and "--sampling per-k" in other


def test_an_unknown_policy_is_refused_before_anything_is_written(tmp_path):
    run = finer("build", "docci", "--sample", "--sampling", "per-image", "--out", tmp_path / "o")
    assert run.returncode == 2 and "--sampling: invalid choice: 'per-image'" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "o").exists()
