"""`finer build compre_cap|docci --from-release TABLES`: the authors' released items, byte for byte.

The fixture (tests/fixtures/finer_release/tables) is written in the authors' column contract
(``image, qtype, question, choice1..choice5, gt_index``; ``gt_index`` 0-based; rows paired two
by two, ``_pos``/``_neg`` in either order) and read here the way the authors read it (pandas,
``keep_default_na=False``), independently of the importer."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Image
from datasets.table import embed_table_storage

from finer_datasets import load_finer
from finer_datasets.constants import LETTERS, SETTINGS
from finer_datasets.core.reader import iter_records
from finer_datasets.mcq.records import pair_rows, question_rows

FIXTURE = Path(__file__).parent / "fixtures" / "finer_release" / "tables"
IMAGES = FIXTURE / "images"


def finer(*args):
    """The command line in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def authors_table(setting, folder=FIXTURE):
    return pd.read_csv(folder / f"{setting}.csv", keep_default_na=False)


def question_id(setting, table, row):
    """The documented id rule: pair n = rows 2n, 2n+1; <setting>_<image key>_p<n:05d>_<pos|neg>."""
    record = table.iloc[row]
    key = re.sub(r"[^A-Za-z0-9-]+", "-", Path(record["image"]).stem).strip("-")
    suffix = record["qtype"].rsplit("_", 1)[1]
    return f"{setting}_{key}_p{row // 2:05d}_{suffix}"


def expected_questions(folder=FIXTURE):
    out = {}
    for setting in SETTINGS:
        table = authors_table(setting, folder)
        for row in range(len(table)):
            r = table.iloc[row]
            out[question_id(setting, table, row)] = {
                "setting": setting, "image_filename": r["image"], "question": r["question"],
                "options": [r[f"choice{i}"] for i in range(1, 6)], "answer": LETTERS[int(r["gt_index"])],
                "gt_index": int(r["gt_index"])}
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "compre_cap"
    run = finer("build", "compre_cap", "--from-release", FIXTURE, "--out", out, "--no-progress")
    assert run.returncode == 0, run.stderr
    return out


def test_questions_equal_the_release_rows_byte_for_byte(imported):
    expected = expected_questions()
    questions = load_finer(str(imported), "questions", split="test")
    got = {q["question_id"]: {k: q[k] for k in ("setting", "image_filename", "question", "options", "answer",
                                                 "gt_index")} for q in questions.remove_columns("image")}
    assert got == expected
    # the same through the one flatten, straight from the shards
    manifest = json.loads((imported / "manifest.json").read_text())
    flat = {q["question_id"]: q for r in iter_records(imported, manifest)
            for p in pair_rows(r) for q in question_rows(p)}
    assert {qid: {k: q[k] for k in expected[qid]} for qid, q in flat.items()} == expected
    raw = (FIXTURE / "multi_attr.csv").read_bytes()  # UTF-8 text with commas inside quoted fields
    attr = [q for q in flat.values() if q["setting"] == "multi_attr"]
    assert attr and all(t.encode() in raw for q in attr for t in [q["question"], *q["options"]])
    assert any("crème, knitted" in q["question"] for q in attr)


def test_images_are_the_release_files_and_records_carry_no_scene_graph(imported):
    manifest = json.loads((imported / "manifest.json").read_text())
    records = list(iter_records(imported, manifest))
    assert sorted(r["image_file"] for r in records) == sorted(p.name for p in IMAGES.iterdir())
    assert all(r["scene_graph"] == {"objects": [], "relations": []} for r in records)
    ds = load_finer(str(imported), "images", split="test")
    for row in ds:
        assert row["jpg"].size == (8, 6)


def test_k_and_the_negated_position_are_read_from_the_text_or_left_null(imported):
    manifest = json.loads((imported / "manifest.json").read_text())
    pairs = {p["pair_id"]: p for r in iter_records(imported, manifest) for p in pair_rows(r)}
    obj = pairs["multi_obj_000000000285_p00001"]  # "bear, grass, and tree", bear negated (rows neg, pos)
    assert (obj["k"], obj["negated_index"], obj["elements"], obj["negated"]) == (
        3, 0, ["bear", "grass", "tree"], {"positive": "bear", "negative": "cow"})
    attr = pairs["multi_attr_000000000285_p00001"]  # one attribute with "and" inside it
    assert (attr["k"], attr["elements"]) == (1, ["with a black and brown color"])
    attr2 = pairs["multi_attr_000000000139_p00000"]  # an attribute with a comma inside it
    assert (attr2["k"], attr2["negated_index"]) == (2, 0)
    rel = pairs["multi_rel_000000000139_p00000"]  # the subject cannot be told from the first relation
    assert (rel["k"], rel["negated_index"], rel["elements"], rel["negated"]) == (2, 1, [], None)
    corrected = pairs["multi_rel_000000000632_p00001"]  # a hand-corrected pair off the template
    assert (corrected["k"], corrected["negated_index"], corrected["negated"]) == (None, None, None)
    wh = pairs["wh_000000000139_p00001"]
    assert (wh["k"], wh["negated_index"], wh["negated"]) == (
        2, 1, {"positive": "with short hair", "negative": "with long hair"})
    assert wh["positive"]["option_types"].count("deny") == 1
    assert manifest["counts"]["pairs_by_k"]["multi_rel"] == {"2": 1, "?": 1}


def authors_letter(text):
    """The authors' parser: the first character in [A-Ea-e] anywhere in the answer."""
    m = re.search(r"[A-Ea-e]", text)
    return LETTERS.index(m.group(0).upper()) if m else -1


def authors_paired_accuracy(table, responses):
    """The authors' scorer on a table: rows 2n and 2n+1 are one pair; both right => the pair is right."""
    assert len(table) % 2 == 0
    right = sum(all(authors_letter(responses[j]) == int(table.iloc[j]["gt_index"]) for j in (i, i + 1))
                for i in range(0, len(table), 2))
    return 100.0 * right / (len(table) // 2)


def response(number, right):
    """Raw answers as models give them: mostly the right letter in some form, sometimes a wrong one,
    sometimes text the authors' first-letter parser misreads ("The ..." reads as E)."""
    if number % 5 == 3:
        return LETTERS[(LETTERS.index(right) + 1) % 5]
    if number % 7 == 4:
        return f"The answer is {right}"
    return ("{}", "({})", "{}.", "{} is correct")[number % 4].format(right if number % 3 else right.lower())


def test_official_scoring_equals_the_authors_rule_on_the_table(imported, tmp_path):
    responses, lines, number = {}, [], 0
    for setting in SETTINGS:
        table = authors_table(setting)
        responses[setting] = []
        for row in range(len(table)):
            text = response(number, LETTERS[int(table.iloc[row]["gt_index"])])
            number += 1
            responses[setting].append(text)
            lines.append(json.dumps({"question_id": question_id(setting, table, row), "response": text}))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("\n".join(lines) + "\n")
    run = finer("score", imported, "--predictions", predictions, "--parser", "official", "--out", tmp_path / "report")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    expected = {s: authors_paired_accuracy(authors_table(s), responses[s]) for s in SETTINGS}
    assert {s: report["settings"][s]["paired_accuracy"] for s in SETTINGS} == pytest.approx(expected)
    assert len(set(expected.values())) > 1  # some pairs right, some wrong
    pairs = sum(len(authors_table(s)) // 2 for s in SETTINGS)
    total = sum(expected[s] * len(authors_table(s)) // 2 for s in SETTINGS) / pairs
    assert report["overall"]["paired_accuracy"] == pytest.approx(total)


def test_rebuild_is_byte_identical_and_verifies(imported, tmp_path):
    again = tmp_path / "again"
    run = finer("build", "compre_cap", "--from-release", FIXTURE, "--out", again, "--no-progress")
    assert run.returncode == 0, run.stderr
    files = sorted(p.relative_to(imported) for p in imported.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((imported / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert finer("verify", again).returncode == 0


def test_manifest_and_card_carry_the_release_and_its_digest(imported):
    manifest = json.loads((imported / "manifest.json").read_text())
    card = (imported / "README.md").read_text()
    release = manifest["provenance"]["release"]
    digest = next(s for s in manifest["sources"] if s["name"] == "release_tables")
    assert release["from"] == "tables" and release["images"] == "files in images/"
    assert release["tables"]["multi_obj"]["rows"] == 6 and release["tables"]["wh"]["pairs"] == 2
    assert digest["files"] == 4 and digest["sha256"] in card
    assert manifest["builder"]["options"] == {"from_release": "tables"}
    assert "finer build compre_cap --out OUT --seed 0 --from-release tables" in card
    text = " ".join(card.split())
    assert "recommended way to publish `finer/compre_cap`" in text and "byte for byte" in text
    assert manifest["llm"] is None


def test_docci_imports_the_same_way_without_a_model(tmp_path):
    out = tmp_path / "docci"
    run = finer("build", "docci", "--from-release", FIXTURE, "--images", IMAGES, "--out", out, "--no-progress")
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == "docci" and manifest["builder"]["options"] == {"from_release": "tables",
                                                                                 "images": "images"}
    questions = load_finer(str(out), "questions", split="test")
    assert len(questions) == sum(len(authors_table(s)) for s in SETTINGS)
    assert "recommended way to publish `finer/docci`" in " ".join((out / "README.md").read_text().split())


HUB_SPLITS = {"multi_obj": "multi_object", "multi_attr": "multi_attribute", "multi_rel": "multi_relation", "wh": "wh"}


def hub_layout(folder, *, shards=None, replace_bytes=None):
    """The authors' Hub copy, made as their script makes it (image paths cast to an Image feature,
    ``image_filename`` and ``subset`` added) with the bytes embedded as ``push_to_hub`` does, in the
    Hub's layout ``data/<split>-NNNNN-of-NNNNN.parquet`` (split names of their evaluation scripts)."""
    (folder / "data").mkdir(parents=True)
    for setting, split in HUB_SPLITS.items():
        df = authors_table(setting)
        df["image_filename"] = df["image"].astype(str)
        df["image"] = df["image_filename"].apply(lambda name: str(IMAGES / name))
        df["gt_index"] = pd.to_numeric(df["gt_index"], errors="raise").astype(int)
        df["subset"] = split
        ds = Dataset.from_pandas(df, preserve_index=False).cast_column("image", Image())
        table = embed_table_storage(ds.data.table)
        if replace_bytes and setting == replace_bytes[0]:
            rows = table.to_pylist()
            rows[replace_bytes[1]]["image"]["bytes"] = (IMAGES / "000000000632.jpg").read_bytes()
            table = table.from_pylist(rows, schema=table.schema)
        cuts = shards.get(setting, []) if shards else []
        bounds = [0, *cuts, len(table)]
        for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
            pq.write_table(table.slice(start, end - start),
                           folder / "data" / f"{split}-{i:05d}-of-{len(bounds) - 1:05d}.parquet")
    (folder / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n")
    return folder


def test_hub_layout_with_embedded_images_gives_the_same_shards(imported, tmp_path):
    tables = hub_layout(tmp_path / "hub", shards={"multi_obj": [3]})  # a pair across two shards
    out = tmp_path / "out"
    run = finer("build", "compre_cap", "--from-release", tables, "--out", out, "--no-progress")
    assert run.returncode == 0, run.stderr
    shards = sorted(p.relative_to(out) for p in (out / "data").iterdir())
    assert shards == sorted(p.relative_to(imported) for p in (imported / "data").iterdir())
    assert all((out / s).read_bytes() == (imported / s).read_bytes() for s in shards)  # records and image bytes
    release = json.loads((out / "manifest.json").read_text())["provenance"]["release"]
    assert release["images"] == "embedded in the tables"
    assert [f["name"] for f in release["tables"]["multi_obj"]["files"]] == [
        "data/multi_object-00000-of-00002.parquet", "data/multi_object-00001-of-00002.parquet"]


def test_an_embedded_image_with_other_bytes_under_one_name_is_one_line(tmp_path):
    tables = hub_layout(tmp_path / "hub", replace_bytes=("wh", 2))
    run = finer("build", "compre_cap", "--from-release", tables, "--out", tmp_path / "out", "--no-progress")
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: file ")
    assert "wh-00000-of-00001.parquet, record row 2, field 'image'" in run.stderr
    assert "image '000000000139.jpg' has other bytes than in multi_object-00000-of-00001.parquet row 0" in run.stderr
    assert not (tmp_path / "out").exists()


def test_python_api_release_and_the_rebuild_card(imported, tmp_path, sample_build):
    from finer_datasets import build, get_builder

    out = build(get_builder("compre_cap"), source=None, out=tmp_path / "api", options={"from_release": str(FIXTURE)},
                progress=False).out  # the options name the source
    assert (out / "data").is_dir() and json.loads((out / "manifest.json").read_text())["dataset"] == "compre_cap"
    run = finer("release", imported, "--to", tmp_path / "repo")
    assert run.returncode == 0, run.stderr
    # a build from the source says what to publish
    card = " ".join((sample_build.out / "README.md").read_text().split())
    assert "The recommended release of `finer/compre_cap` is the one imported" in card
    assert "--from-release TABLES" in card
