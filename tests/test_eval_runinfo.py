"""run.json: written on the first session, checked on every resumed one."""

import json

import pytest

from finer_datasets.errors import OutputError
from finer_datasets.eval.runinfo import IDENTITY, claim_run, read_run, run_record

DATASET = {"source": "out/compre_cap", "dataset": "compre_cap", "version": "2.1.0", "manifest_digest": "sha256:aa",
           "layout": "per-image/1", "verified": True, "revision": None}


def record(**changes):
    base = dict(engine="generate", model="m", prompt="official", parser="strict", dataset=DATASET, max_new_tokens=2,
                dtype="auto", seed=0)
    return run_record(**{**base, **changes})


def test_first_session_writes_and_a_same_run_resumes(tmp_path):
    first = claim_run(tmp_path, record(), has_answers=False)
    stored = read_run(tmp_path)
    assert stored == first and stored["package"]["name"] == "finer-datasets" and stored["started"] == stored["time"]
    assert set(IDENTITY) <= set(stored)
    # the parser, the endpoint and a dataset moved to another folder are not part of the identity
    again = claim_run(tmp_path, record(parser="official", dataset={**DATASET, "source": "elsewhere"}), has_answers=True)
    assert again["started"] == first["started"] and again["parser"] == "official"


@pytest.mark.parametrize("change", [{"model": "other"}, {"engine": "letters"}, {"prompt": "appendix-d"},
                                    {"max_new_tokens": 3}, {"dtype": "bfloat16"},
                                    {"dataset": {**DATASET, "manifest_digest": "sha256:bb"}},
                                    {"dataset": {**DATASET, "version": "2.1.1"}}])
def test_a_different_run_is_refused(tmp_path, change):
    claim_run(tmp_path, record(), has_answers=False)
    before = (tmp_path / "run.json").read_text()
    with pytest.raises(OutputError, match="another configuration .*" + next(iter(change))):
        claim_run(tmp_path, record(**change), has_answers=True)
    assert (tmp_path / "run.json").read_text() == before


def test_the_model_commit_is_compared_once_known(tmp_path):
    claim_run(tmp_path, record(), has_answers=False)
    claim_run(tmp_path, record(model_commit="abc"), has_answers=True)
    assert read_run(tmp_path)["model_commit"] == "abc"
    assert claim_run(tmp_path, record(), has_answers=True)["model_commit"] == "abc"  # not yet known: kept
    with pytest.raises(OutputError, match="model_commit"):
        claim_run(tmp_path, record(model_commit="def"), has_answers=True)


def test_a_run_that_never_answered_is_replaced(tmp_path):
    claim_run(tmp_path, record(model="typo"), has_answers=False)
    assert claim_run(tmp_path, record(model="m"), has_answers=False)["model"] == "m"


def test_unattributable_or_broken_folders_are_refused(tmp_path):
    with pytest.raises(OutputError, match="holds answers but no run.json"):
        claim_run(tmp_path, record(), has_answers=True)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(OutputError, match="unreadable run record"):
        claim_run(tmp_path, record(), has_answers=False)
    (tmp_path / "run.json").write_text(json.dumps([1]))
    with pytest.raises(OutputError, match="not a run record"):
        read_run(tmp_path)
