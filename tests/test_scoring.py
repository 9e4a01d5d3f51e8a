"""Paired accuracy and its breakdowns (paper, Eq. 1, Fig. 4, E.1, E.6, E.7), predictions loading."""

import json
import random

import numpy as np
import pytest

from finer_datasets import FinerError, wh_pair, yesno_pair
from finer_datasets.eval.scoring import (
    PairOutcome,
    PredictionsError,
    check_predictions,
    load_predictions,
    pair_outcome,
    score,
)
from finer_datasets.mcq.construct import LETTERS

OBJECTS = ["cat", "desk", "lamp", "chair", "bed", "shelf", "plant", "cup"]
NEGS = ["dog", "fox", "owl", "rabbit"]


def yesno_record(i, rng, setting="multi_obj", k=None, negated_index=None):
    k = k or rng.randint(1, 4)
    units = OBJECTS[:k]
    index = rng.randrange(k) if negated_index is None else negated_index
    pair = yesno_pair(f"{setting}_{i:05d}_k{k}", setting, units, index, NEGS, rng)
    return pair.to_record(dataset="compre_cap", image_id=f"{i:012d}", image_file=f"{i:012d}.jpg")


def wh_record(i, rng):
    attributes = ["with a black color", "with a small size", "with a fluffy tail"][: rng.randint(1, 3)]
    pair = wh_pair(
        f"wh_{i:05d}_r0",
        question=lambda d: f"What is the {d} lying on?",
        context="cat",
        attributes=attributes,
        attribute_index=rng.randrange(len(attributes)),
        attribute_negatives=["with a white color", "with a red color", "with a large size", "with a bald tail"],
        target="desk",
        target_negatives=["bed", "sofa", "chair", "table"],
        rng=rng,
    )
    return pair.to_record(dataset="compre_cap", image_id=f"{i:012d}", image_file=f"{i:012d}.jpg")


def make_records(n, seed=0, settings=("multi_obj", "multi_attr", "wh")):
    rng = random.Random(seed)
    records = []
    for i in range(n):
        setting = settings[i % len(settings)]
        records.append(wh_record(i, rng) if setting == "wh" else yesno_record(i, rng, setting))
    return records


def questions(records):
    for r in records:
        yield r["positive"]
        yield r["negative"]


def answer_all(records, choose):
    """``{question_id: choose(question)}`` for every question."""
    return {q["question_id"]: choose(q) for q in questions(records)}


def oracle(q):
    return q["answer"]


def first_affirm(q):
    return LETTERS[q["option_types"].index("affirm")]


@pytest.fixture(scope="module")
def records():
    return make_records(60)


# ---------------------------------------------------------------- per-pair logic


def test_pair_outcome_is_a_pure_function_of_record_and_letters():
    rec = yesno_record(0, random.Random(1), k=3, negated_index=2)
    pos, neg = rec["positive"], rec["negative"]
    yes_on_neg = LETTERS[neg["option_types"].index("affirm")]
    deny_on_pos = LETTERS[pos["option_types"].index("deny")]

    right = pair_outcome(rec, pos["answer"], neg["answer"])
    assert isinstance(right, PairOutcome)
    assert right.paired_correct and right.positive_correct and right.negative_correct
    assert not right.false_positive and not right.false_negative and right.unparseable == 0
    assert (right.setting, right.k, right.negated_index) == ("multi_obj", 3, 2)

    fooled = pair_outcome(rec, pos["answer"], yes_on_neg)
    assert fooled.positive_correct and not fooled.negative_correct and not fooled.paired_correct
    assert fooled.false_positive and not fooled.false_negative

    doubting = pair_outcome(rec, deny_on_pos, neg["answer"])
    assert doubting.false_negative and not doubting.false_positive and not doubting.paired_correct

    lost = pair_outcome(rec, None, None)
    assert lost.unparseable == 2 and not lost.paired_correct and not lost.false_positive and not lost.false_negative
    # same inputs, same outcome
    assert pair_outcome(rec, pos["answer"], yes_on_neg) == fooled
    assert float(right.polarity_aware_chance) == 0.0625
    with pytest.raises(ValueError):
        pair_outcome(rec, "F", "A")


def test_wh_pairs_use_option_types_for_fp_and_fn():
    rec = wh_record(0, random.Random(2))
    pos, neg = rec["positive"], rec["negative"]
    correction_on_pos = LETTERS[pos["option_types"].index("deny")]
    object_on_neg = LETTERS[neg["option_types"].index("affirm")]
    o = pair_outcome(rec, correction_on_pos, object_on_neg)
    assert o.false_negative and o.false_positive and not o.paired_correct
    assert float(o.polarity_aware_chance) == 0.0625  # (1/2 * 1/4) * (1/2 * 1)


# ---------------------------------------------------------------- whole-dataset metrics


def test_oracle_gets_everything_right(records):
    result = score(records, answer_all(records, oracle), bootstrap=200)
    assert set(result["settings"]) == {"multi_obj", "multi_attr", "wh"}
    assert list(result["settings"]) == ["multi_obj", "multi_attr", "wh"]  # the paper's order
    for block in [*result["settings"].values(), result["overall"]]:
        assert block["paired_accuracy"] == 100.0
        assert block["question_accuracy"] == block["positive_accuracy"] == block["negative_accuracy"] == 100.0
        assert block["false_positive_rate"] == block["false_negative_rate"] == 0.0
        assert block["unparseable"] == 0
        assert block["ci95"] == [100.0, 100.0]
    assert result["settings"]["multi_obj"]["n_pairs"] == 20
    assert result["overall"]["n_pairs"] == result["n_pairs"] == 60 and result["n_questions"] == 120


def test_always_yes_gets_zero_paired_and_full_false_positives(records):
    yesno = [r for r in records if r["setting"] != "wh"]
    result = score(yesno, answer_all(yesno, first_affirm), bootstrap=0)
    for block in [*result["settings"].values(), result["overall"]]:
        assert block["paired_accuracy"] == 0.0
        assert block["positive_accuracy"] == 100.0 and block["negative_accuracy"] == 0.0
        assert block["question_accuracy"] == 50.0
        assert block["false_positive_rate"] == 100.0 and block["false_negative_rate"] == 0.0
        assert block["ci95"] is None
    # on Wh pairs the affirm options are objects: a false premise is never corrected either
    result = score(records, answer_all(records, first_affirm), bootstrap=0)
    assert result["settings"]["wh"]["paired_accuracy"] == 0.0
    assert result["settings"]["wh"]["false_positive_rate"] == 100.0


def test_hand_computed_small_example():
    rng = random.Random(5)
    recs = [yesno_record(i, rng, k=k, negated_index=0) for i, k in enumerate([1, 1, 2, 2])]
    preds = {}
    # pair 0: both right -> paired
    preds[recs[0]["positive"]["question_id"]] = recs[0]["positive"]["answer"]
    preds[recs[0]["negative"]["question_id"]] = f"Answer: {recs[0]['negative']['answer']}"
    # pair 1: positive right, negative "Yes" -> false positive
    preds[recs[1]["positive"]["question_id"]] = f"({recs[1]['positive']['answer']})"
    preds[recs[1]["negative"]["question_id"]] = first_affirm(recs[1]["negative"])
    # pair 2: positive answered "No, but" -> false negative, negative right
    preds[recs[2]["positive"]["question_id"]] = LETTERS[recs[2]["positive"]["option_types"].index("deny")]
    preds[recs[2]["negative"]["question_id"]] = recs[2]["negative"]["answer"]
    # pair 3: two unparseable answers
    preds[recs[3]["positive"]["question_id"]] = "A or B"
    preds[recs[3]["negative"]["question_id"]] = ""

    result = score(recs, preds, bootstrap=0)
    block = result["settings"]["multi_obj"]
    assert block["n_pairs"] == 4 and block["n_questions"] == 8
    assert block["paired_accuracy"] == 25.0
    assert block["question_accuracy"] == 50.0  # 4 of 8
    assert block["positive_accuracy"] == 50.0 and block["negative_accuracy"] == 50.0
    assert block["false_positive_rate"] == 25.0 and block["false_negative_rate"] == 25.0
    assert block["unparseable"] == 2
    # each group with its 95% Wilson interval (1 of 2: 9.45-90.55; 0 of 2: 0-65.76)
    assert {k: (g["paired_accuracy"], g["n_pairs"]) for k, g in block["by_k"].items()} == {1: (50.0, 2), 2: (0.0, 2)}
    assert block["by_k"][1]["ci95"] == pytest.approx([9.4531, 90.5469], abs=1e-4)
    assert block["by_k"][2]["ci95"] == pytest.approx([0.0, 65.7620], abs=1e-4)
    assert {k: (g["paired_accuracy"], g["n_pairs"]) for k, g in block["by_negated_index"].items()} == {0: (25.0, 4)}
    assert block["answered"] == 8 and block["read"] == 6 and block["missing"] == 0
    assert block["random_baselines"] == {"uniform": 4.0, "polarity_aware": 6.25}
    assert result["overall"] == block
    assert result["parser"] == "strict"


def test_parser_mode_changes_how_answers_are_read():
    rng = random.Random(0)
    # the right answer is B on both questions, written as "The answer is B"
    recs = []
    i = 0
    while len(recs) < 3:
        rec = yesno_record(i, rng)
        i += 1
        if rec["positive"]["answer"] == rec["negative"]["answer"] == "B":
            recs.append(rec)
    preds = answer_all(recs, lambda q: "The answer is B")
    assert score(recs, preds, bootstrap=0)["overall"]["paired_accuracy"] == 100.0
    official = score(recs, preds, parser="official", bootstrap=0)
    assert official["parser"] == "official" and official["overall"]["paired_accuracy"] == 0.0  # read as "E"
    with pytest.raises(ValueError):
        score(recs, preds, parser="lenient")


def test_breakdowns_add_up(records):
    rng = random.Random(11)
    preds = answer_all(records, lambda q: q["answer"] if rng.random() < 0.7 else rng.choice(LETTERS))
    result = score(records, preds, bootstrap=0)
    for block in [*result["settings"].values(), result["overall"]]:
        correct = round(block["paired_accuracy"] * block["n_pairs"] / 100)
        for key in ("by_k", "by_negated_index"):
            groups = block[key]
            assert list(groups) == sorted(groups)
            assert sum(g["n_pairs"] for g in groups.values()) == block["n_pairs"]
            assert round(sum(g["paired_accuracy"] * g["n_pairs"] / 100 for g in groups.values())) == correct
    assert sum(b["n_pairs"] for b in result["settings"].values()) == result["overall"]["n_pairs"]
    # the paired accuracy of each setting is Eq. 1 computed directly
    for setting, block in result["settings"].items():
        mine = [r for r in records if r["setting"] == setting]
        both = sum(preds[r["positive"]["question_id"]] == r["positive"]["answer"]
                   and preds[r["negative"]["question_id"]] == r["negative"]["answer"] for r in mine)
        assert block["paired_accuracy"] == pytest.approx(100 * both / len(mine))


def test_rows_with_a_json_column_are_accepted(records):
    rows = [{"json": r, "jpg": None} for r in records[:6]]
    preds = answer_all(records[:6], oracle)
    assert score(rows, preds, bootstrap=0)["overall"]["paired_accuracy"] == 100.0


# ---------------------------------------------------------------- random guessers (E.6)


@pytest.fixture(scope="module")
def many_records():
    return make_records(20_000, seed=3, settings=("multi_obj", "multi_attr", "multi_rel", "wh"))


def uniform_guesser(rng):
    return lambda q: rng.choice(LETTERS)


def polarity_aware_guesser(rng):
    def guess(q):
        kind = rng.choice(["affirm", "deny"])
        return rng.choice([letter for letter, t in zip(LETTERS, q["option_types"]) if t == kind])
    return guess


@pytest.mark.parametrize("guesser,expected", [(uniform_guesser, 4.0), (polarity_aware_guesser, 6.25)])
def test_random_guessers_match_the_analytic_baselines(many_records, guesser, expected):
    result = score(many_records, answer_all(many_records, guesser(random.Random(42))), bootstrap=0)
    assert result["overall"]["n_pairs"] == 20_000
    assert abs(result["overall"]["paired_accuracy"] - expected) <= 0.7
    assert result["random_baselines"] == {"uniform": 4.0, "polarity_aware": 6.25}
    for block in result["settings"].values():
        assert block["random_baselines"] == {"uniform": 4.0, "polarity_aware": 6.25}


# ---------------------------------------------------------------- bootstrap and determinism


def test_bootstrap_is_deterministic_and_contains_the_estimate(records):
    rng = random.Random(7)
    preds = answer_all(records, lambda q: q["answer"] if rng.random() < 0.75 else rng.choice(LETTERS))
    random.seed(123)
    np.random.seed(123)
    py_state, np_state = random.getstate(), np.random.get_state()
    a = score(records, preds, bootstrap=500, seed=1)
    assert random.getstate() == py_state  # the global RNGs are never touched
    np_after = np.random.get_state()
    assert np.array_equal(np_after[1], np_state[1]) and np_after[2] == np_state[2]
    b = score(records, preds, bootstrap=500, seed=1)
    assert a == b
    c = score(records, preds, bootstrap=500, seed=2)
    assert c["overall"]["paired_accuracy"] == a["overall"]["paired_accuracy"]
    assert c["overall"]["ci95"] != a["overall"]["ci95"]
    for block in [*a["settings"].values(), a["overall"]]:
        low, high = block["ci95"]
        assert 0.0 <= low <= block["paired_accuracy"] <= high <= 100.0
        assert low < high
    # more pairs, narrower interval
    width = a["overall"]["ci95"][1] - a["overall"]["ci95"][0]
    assert all(b["ci95"][1] - b["ci95"][0] > width for b in a["settings"].values())
    assert a["seed"] == 1 and a["bootstrap"] == 500


# ---------------------------------------------------------------- predictions checks


def test_missing_unknown_and_duplicate_ids_are_errors(records):
    preds = answer_all(records, oracle)
    ids = list(preds)
    for qid in ids[:7]:
        del preds[qid]
    preds["nope_1_pos"] = "A"
    preds["nope_2_neg"] = "B"
    with pytest.raises(PredictionsError) as info:
        score(records, preds)
    err = info.value
    assert isinstance(err, FinerError) and err.exit_code == 2
    assert len(err.missing) == 7 and sorted(err.unknown) == ["nope_1_pos", "nope_2_neg"]
    message = str(err)
    assert "7 missing question id(s)" in message and "2 unknown question id(s)" in message
    assert repr(ids[0]) in message and repr(ids[4]) in message and repr(ids[5]) not in message  # 5 examples
    assert "..." in message

    full = answer_all(records, oracle)
    items = [{"question_id": q, "response": r} for q, r in full.items()]
    items += [items[0], items[3], items[3]]
    with pytest.raises(PredictionsError, match=r"2 duplicate question id\(s\)") as info:
        score(records, items)
    assert sorted(info.value.duplicate) == sorted([ids[0], ids[3]])
    # the same list without duplicates, and (id, response) tuples, are scored
    assert score(records, items[:-3], bootstrap=0)["overall"]["paired_accuracy"] == 100.0
    assert score(records, list(full.items()), bootstrap=0)["overall"]["paired_accuracy"] == 100.0


def test_check_predictions_accepts_an_exact_cover(records):
    check_predictions(records, answer_all(records, oracle))
    with pytest.raises(PredictionsError, match="1 missing"):
        check_predictions(records, dict(list(answer_all(records, oracle).items())[1:]))


def write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_load_predictions(tmp_path):
    path = write_jsonl(tmp_path / "preds.jsonl", [
        json.dumps({"question_id": "a_pos", "response": "B", "model": "m"}),
        "",
        json.dumps({"question_id": "a_neg", "response": "The answer is C."}),
    ])
    assert load_predictions(path) == {"a_pos": "B", "a_neg": "The answer is C."}
    assert load_predictions(str(path)) == {"a_pos": "B", "a_neg": "The answer is C."}


@pytest.mark.parametrize(
    "bad,reason",
    [
        ('{"question_id": "x_neg", "response": "B"', "not valid JSON"),
        ('["x_neg", "B"]', "expected a JSON object"),
        ('{"question_id": "x_neg"}', "missing key 'response'"),
        ('{"response": "B"}', "missing key 'question_id'"),
        ('{"question_id": "x_neg", "response": null}', "'response' must be a string, got null"),
        ('{"question_id": 3, "response": "B"}', "'question_id' must be a string, got int"),
    ],
)
def test_bad_prediction_lines_name_file_and_line(tmp_path, bad, reason):
    path = write_jsonl(tmp_path / "preds.jsonl", [json.dumps({"question_id": "x_pos", "response": "A"}), bad])
    with pytest.raises(PredictionsError) as info:
        load_predictions(path)
    assert str(info.value).startswith(f"file {path}, line 2: ")
    assert reason in str(info.value)
    assert info.value.line == 2 and info.value.path == str(path) and info.value.exit_code == 2


def test_duplicate_prediction_lines(tmp_path):
    lines = [json.dumps({"question_id": f"q{i}_pos", "response": "A"}) for i in range(3)]
    path = write_jsonl(tmp_path / "preds.jsonl", [*lines, lines[1], lines[1], lines[2]])
    with pytest.raises(PredictionsError) as info:
        load_predictions(path)
    message = str(info.value)
    assert "2 duplicate question id(s)" in message
    assert "'q1_pos' on lines 2, 4, 5" in message and "'q2_pos' on lines 3, 6" in message
    assert info.value.duplicate == ["q1_pos", "q2_pos"]


def test_missing_predictions_file(tmp_path):
    with pytest.raises(PredictionsError, match="cannot read predictions"):
        load_predictions(tmp_path / "absent.jsonl")
