"""Position rotation (paper, E.1): every k = 3 multi_* pair with its negative at positions 1, 2 and 3, as the
view `load_finer(..., "positions")`, scored by `finer score --view positions` into a per-position table and plot."""

import json

import pytest
from test_ladder import RELEASE, finer, records

from finer_datasets import load_finer
from finer_datasets.core.text import join_list
from finer_datasets.mcq.construct import QUESTION_TEMPLATE
from finer_datasets.mcq.positions import POSITION_COLUMNS, position_pair_records, rotated_pairs
from finer_datasets.mcq.records import pair_rows
from finer_datasets.scene_graph.graph import relation_phrase


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("positions")
    for name in ("compre_cap", "docci"):
        run = finer("build", name, "--sample", "--out", f"out/{name}", cwd=folder)
        assert run.returncode == 0, run.stderr
    return folder


def negatives_of(record, setting, element):
    """The negatives the scene graph stores for a pair's element (as the question phrases them)."""
    graph = record["scene_graph"]
    objects = {o["id"]: o for o in graph["objects"]}
    if setting == "multi_obj":
        return next(o["negatives"] for o in graph["objects"] if o["name"] == element and o["negatives"])
    if setting == "multi_attr":
        return next(a["negatives"] for o in graph["objects"] for a in o["attributes"] if a["text"] == element)
    return [relation_phrase(p, objects[r["object"]]["name"]) for r in graph["relations"] for p in r["negatives"]]


@pytest.mark.parametrize("name", ["compre_cap", "docci"])
def test_every_k3_pair_yields_three_negatives_that_differ_only_at_the_rotated_element(builds, name):
    total = 0
    for record in records(builds / "out" / name):
        originals = {p["pair_id"]: p for p in pair_rows(record) if p["setting"] != "wh" and p["k"] == 3}
        rotated = rotated_pairs(record)
        assert sorted(p["rotated_from"] for p in rotated) == sorted(i for i in originals for _ in range(3))
        for pair in rotated:
            original = originals[pair["rotated_from"]]
            position = int(pair["pair_id"].rsplit("_p", 1)[1])
            index = position - 1
            assert pair["negated_index"] == index and pair["elements"] == original["elements"]
            assert pair["positive"]["question"] == original["positive"]["question"]
            assert (pair["positive"]["question_id"], pair["negative"]["question_id"]) == \
                (f"{pair['pair_id']}_pos", f"{pair['pair_id']}_neg")
            # X of the positive is a prefix then the three elements joined; the negative is that prefix
            # then the same elements with the one at the rotated position replaced
            x = pair["positive"]["question"][len("Can you see "):-len(" in this image?")]
            prefix = x[: len(x) - len(join_list(pair["elements"]))]
            assert prefix + join_list(pair["elements"]) == x
            wrong = list(pair["elements"])
            wrong[index] = pair["negated"]["negative"]
            assert pair["negative"]["question"] == QUESTION_TEMPLATE.format(X=prefix + join_list(wrong))
            assert pair["negated"]["positive"] == pair["elements"][index]
            negatives = negatives_of(record, pair["setting"], pair["elements"][index])
            assert pair["negated"]["negative"] in negatives
            if index == original["negated_index"]:  # the pair itself, renamed
                assert pair["negative"]["question"] == original["negative"]["question"]
                assert pair["negative"]["options"] == original["negative"]["options"]
        total += len(originals)
        by_origin = {}
        for pair in rotated:
            by_origin.setdefault(pair["rotated_from"], set()).add(pair["negated_index"])
        assert all(indexes == {0, 1, 2} for indexes in by_origin.values())
    assert total > 0  # the samples hold k = 3 pairs of every multi_* setting
    assert rotated_pairs(records(builds / "out" / name)[0]) == rotated_pairs(records(builds / "out" / name)[0])


def test_the_positions_view(builds):
    out = str(builds / "out" / "compre_cap")
    view = load_finer(out, "positions", split="test")
    k3 = sum(1 for r in records(builds / "out" / "compre_cap") for p in pair_rows(r) if p["setting"] != "wh" and p["k"] == 3)
    assert len(view) == 2 * 3 * k3 and tuple(view.column_names) == (*POSITION_COLUMNS, "image")
    assert len(set(view["question_id"])) == len(view) and set(view["k"]) == {3}
    assert set(view["setting"]) == {"multi_obj", "multi_attr", "multi_rel"}
    assert view[0]["image"].size[0] > 0
    only = load_finer(out, "positions", split="test", setting="multi_rel")
    assert set(only["setting"]) == {"multi_rel"} and 0 < len(only) < len(view)


def test_finer_score_view_positions(builds):
    folder = builds / "out" / "compre_cap"
    pairs = position_pair_records(records(folder))
    answers = {}
    for pair in pairs:  # right everywhere except the negatives rotated to position 2
        answers[pair["positive"]["question_id"]] = pair["positive"]["answer"]
        answers[pair["negative"]["question_id"]] = "Z" if pair["negated_index"] == 1 else pair["negative"]["answer"]
    (builds / "positions.jsonl").write_text("".join(json.dumps({"question_id": q, "response": r}) + "\n"
                                                    for q, r in answers.items()))
    run = finer("score", "out/compre_cap", "--view", "positions", "--predictions", "positions.jsonl", "--out",
                "runs/positions", cwd=builds)
    assert run.returncode == 0, run.stderr
    report = json.loads((builds / "runs" / "positions" / "report.json").read_text())
    assert report["view"] == "positions" and set(report["settings"]) == {"multi_obj", "multi_attr", "multi_rel"}
    for block in report["settings"].values():
        assert [block["by_position"][p]["paired_accuracy"] for p in ("1", "2", "3")] == [100.0, 0.0, 100.0]
    text = (builds / "runs" / "positions" / "report.md").read_text()
    assert "## Positional bias: paired accuracy by position of the negative (paper, E.1)" in text
    assert "(accuracy_by_position.png)" in text
    assert (builds / "runs" / "positions" / "accuracy_by_position.png").read_bytes()[:4] == b"\x89PNG"
    # the same answers are not answers to the dataset's own pairs: refused in one line
    run = finer("score", "out/compre_cap", "--predictions", "positions.jsonl", "--out", "runs/pairs", cwd=builds)
    assert run.returncode == 2 and "unknown question id" in run.stderr and run.stderr.count("\n") == 1


def test_a_release_import_has_no_scene_graph_to_rotate_with(tmp_path):
    run = finer("build", "compre_cap", "--from-release", RELEASE, "--out", "release", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert position_pair_records(records(tmp_path / "release")) == []
    assert len(load_finer(str(tmp_path / "release"), "positions", split="test")) == 0
