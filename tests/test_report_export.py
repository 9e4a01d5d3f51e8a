"""Report files (JSON, Markdown, PNG plots) and exports to VLMEvalKit TSV and FINER's CSV layout."""

import base64
import csv
import io
import json
import random

import datasets
import pytest
from PIL import Image

from finer_datasets import SETTINGS
from finer_datasets.errors import SourceError, UsageError
from finer_datasets.eval.export import (
    IMAGE_REFERENCE_MAX,
    OFFICIAL_COLUMNS,
    VLMEVALKIT_COLUMNS,
    export_official_csv,
    export_vlmevalkit,
    resolve_image_references,
)
from finer_datasets.eval.report import REPORT_FILES, report_markdown, write_report
from finer_datasets.eval.scoring import pair_records, score
from finer_datasets.mcq.construct import LETTERS


@pytest.fixture(scope="module")
def images(sample_build):
    """The per-image rows, as load_dataset gives them."""
    return datasets.load_dataset(str(sample_build.out), split="test")


@pytest.fixture(scope="module")
def records(images):
    return pair_records(images)


@pytest.fixture(scope="module")
def result(records):
    """A model right on 80% of positive and 60% of negative questions, the rest a random letter."""
    rng = random.Random(0)
    preds = {}
    for r in records:
        for polarity, p in (("positive", 0.8), ("negative", 0.6)):
            q = r[polarity]
            preds[q["question_id"]] = q["answer"] if rng.random() < p else rng.choice(LETTERS)
    return score(records, preds, bootstrap=200, seed=0)


def test_score_takes_per_image_datasets_directly(images, records, sample_build):
    preds = {q["question_id"]: q["answer"] for r in records for q in (r["positive"], r["negative"])}
    wh_preds = {qid: answer for qid, answer in preds.items() if qid.startswith("wh_")}
    one = score(pair_records(images, ["wh"]), wh_preds, bootstrap=0)
    assert one["n_pairs"] == sample_build.manifest["counts"]["pairs"]["wh"] and one["overall"]["paired_accuracy"] == 100.0
    every = score(datasets.DatasetDict({"test": images}), preds, bootstrap=0)
    assert every["n_pairs"] == len(records) == 289 and list(every["settings"]) == list(SETTINGS)


# ---------------------------------------------------------------- report


def test_report_files(tmp_path, result, sample_build):
    paths = write_report(result, tmp_path / "rep", title="Demo model")
    assert [p.name for p in paths] == list(REPORT_FILES)
    assert all(p.is_file() and p.parent == tmp_path / "rep" for p in paths)
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(REPORT_FILES)  # no temp files left

    text = (tmp_path / "rep" / "report.json").read_text()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert data["title"] == "Demo model" and data["parser"] == "strict"
    assert set(data["settings"]) == set(SETTINGS)
    counts = sample_build.manifest["counts"]["pairs"]
    for setting, block in data["settings"].items():
        assert isinstance(block["n_pairs"], int) and block["n_pairs"] == counts[setting]
        assert block["paired_accuracy"] == pytest.approx(result["settings"][setting]["paired_accuracy"])
        assert set(block["by_k"]) == {str(k) for k in result["settings"][setting]["by_k"]}
        for key in ("question_accuracy", "false_positive_rate", "false_negative_rate", "ci95", "random_baselines",
                    "by_position", "unparseable"):
            assert key in block
        # positions count from 1 in the JSON report, as in the Markdown; the 0-based index is not written
        assert "by_negated_index" not in block
        zero_based = result["settings"][setting]["by_negated_index"]
        assert block["by_position"] == {str(i + 1): g for i, g in zero_based.items()}
        assert min(int(k) for k in block["by_position"]) == 1
    assert data["overall"]["n_pairs"] == sum(counts.values())
    assert data["counts"]["pairs"] == sum(counts.values()) and data["counts"]["questions"] == 2 * sum(counts.values())
    assert data["counts"]["pairs_by_setting"] == counts
    assert data["random_baselines"] == {"uniform": 4.0, "polarity_aware": 6.25}


def test_report_json_is_deterministic(tmp_path, result):
    write_report(result, tmp_path / "a", plots=False)
    write_report(result, tmp_path / "b", plots=False)
    for name in ("report.json", "report.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["report.json", "report.md"]


def test_report_markdown_tables(tmp_path, result):
    write_report(result, tmp_path, title="Demo model", plots=False)
    md = (tmp_path / "report.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# Demo model"
    for setting in (*SETTINGS, "overall"):
        block = result["overall"] if setting == "overall" else result["settings"][setting]
        row = f"| {setting} | {block['n_pairs']} | {block['paired_accuracy']:.1f} |"
        assert any(line.startswith(row) for line in lines), row
        assert any(line.startswith(row) and line.endswith("| 4.00 | 6.25 |") for line in lines)
    assert "| k | multi_obj | multi_attr | multi_rel | wh |" in lines
    k1 = result["settings"]["multi_obj"]["by_k"][1]
    assert any(line.startswith(f"| 1 | {k1['paired_accuracy']:.1f} (n={k1['n_pairs']}) |") for line in lines)
    # multi_obj has k up to 6, multi_attr only up to 3
    assert any(line.startswith("| 6 |") and line.count("–") == 3 for line in lines)


def test_report_from_a_json_round_trip_and_official_note(tmp_path, result):
    reloaded = json.loads((write_report(result, tmp_path / "a", plots=False)[0]).read_text())
    reloaded["parser"] = "official"
    write_report(reloaded, tmp_path / "b", plots=False)
    md = (tmp_path / "b" / "report.md").read_text()
    assert "`official`" in md and "The answer is B" in md
    # string keys from JSON still sort as numbers in the by-k table
    assert md.index("| 2 |") < md.index("| 6 |")


def test_report_plots_are_pngs(tmp_path, result):
    paths = write_report(result, tmp_path)
    for path in paths[2:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size[0] >= 400 and image.size[1] >= 300
            image.verify()


# ---------------------------------------------------------------- exports


def read_tsv(path):
    old = csv.field_size_limit()
    csv.field_size_limit(1 << 30)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter="\t"))
    finally:
        csv.field_size_limit(old)


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("setting", ["multi_obj", "wh"])
def test_vlmevalkit_tsv(tmp_path, images, records, sample_dir, setting):
    chosen = [r for r in records if r["setting"] == setting]
    path = tmp_path / f"{setting}.tsv"
    assert export_vlmevalkit(images, path, settings=[setting]) == 2 * len(chosen)
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.split("\t") == list(VLMEVALKIT_COLUMNS)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2 * len(chosen) + 1
    rows = read_tsv(path)
    assert len(rows) == 2 * len(chosen)
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    images = resolve_image_references(rows)
    inlined = [r["image"] for r in rows if len(r["image"]) > IMAGE_REFERENCE_MAX]
    assert len(inlined) == len(set(inlined)) == len({r["image_file"] for r in chosen})  # each image once
    originals = {}
    for i, record in enumerate(chosen):
        for j, polarity, short in ((2 * i, "positive", "pos"), (2 * i + 1, "negative", "neg")):
            row = rows[j]
            q = record[polarity]
            assert row["category"] == f"{setting}_{short}"
            assert row["question"] == q["question"]
            assert [row[letter] for letter in LETTERS] == q["options"]
            assert row["answer"] == q["answer"]
            name = record["image_file"]
            if name not in originals:
                originals[name] = (sample_dir / "images" / name).read_bytes()
            assert base64.b64decode(images[j], validate=True) == originals[name]


def test_vlmevalkit_tsv_loads_with_pandas(tmp_path, images, records):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "all.tsv"
    n = export_vlmevalkit(datasets.DatasetDict({"test": images}), path)
    assert n == 2 * len(records)
    frame = pd.read_csv(path, sep="\t")
    assert list(frame.columns) == list(VLMEVALKIT_COLUMNS) and len(frame) == n
    assert list(frame["index"]) == list(range(n))
    assert set(frame["category"]) == {f"{s}_{p}" for s in SETTINGS for p in ("pos", "neg")}


def test_no_field_breaks_the_tsv(tmp_path, records):
    record = json.loads(json.dumps(records[0]))
    record["positive"]["question"] = 'Can you see a "cat"\tand\na desk?'
    record["positive"]["options"][0] = "Yes,\r\nI can\u2028see it\tall."
    fake = b"\xff\xd8fake-jpeg\t\n" * 4
    rows = [{"json": record, "jpg": {"bytes": fake, "path": None}}]
    path = tmp_path / "odd.tsv"
    assert export_vlmevalkit(rows, path) == 2
    assert len(path.read_bytes().split(b"\n")) == 4  # header, 2 rows, final newline
    out = read_tsv(path)
    assert len(out) == 2 and all(len(r) == len(VLMEVALKIT_COLUMNS) and None not in r for r in out)
    assert out[0]["question"] == 'Can you see a "cat" and a desk?'
    assert out[0]["A"] == "Yes,  I can see it all."
    assert base64.b64decode(out[0]["image"]) == fake and out[1]["image"] == "0"


def test_an_image_too_small_to_tell_from_a_reference_is_refused(tmp_path, records):
    rows = [{"json": records[0], "jpg": {"bytes": b"\xff\xd8tiny", "path": None}}]  # base64: 12 characters
    with pytest.raises(SourceError, match="VLMEvalKit would read its base64 as a row index"):
        export_vlmevalkit(rows, tmp_path / "tiny.tsv")
    assert list(tmp_path.iterdir()) == []  # not even a temporary file is left


def test_an_image_reference_must_name_a_row_with_an_image():
    good = {"index": 0, "image": "x" * 100}
    assert resolve_image_references([good, {"index": 1, "image": "0"}]) == ["x" * 100] * 2
    for bad in ({"index": 1, "image": "7"}, {"index": 1, "image": "1"}):
        with pytest.raises(SourceError, match="names no row holding an image"):
            resolve_image_references([good, bad])


def test_the_rows_of_a_preference_dataset_are_refused(tmp_path):
    tuning = [{"json": {"image_id": "i", "tuples": []}, "jpg": {"bytes": b"x" * 100, "path": None}}]
    for writer in (export_vlmevalkit, export_official_csv):
        with pytest.raises(UsageError, match="this data is a FINER-Tuning preference dataset"):
            writer(tuning, tmp_path / "x.tsv")
    assert list(tmp_path.iterdir()) == []


def test_decoded_pil_rows_are_exported_losslessly(tmp_path, images):
    rows = [images[i] for i in range(2)]  # decoded: PIL images, no original bytes
    assert isinstance(rows[0]["jpg"], Image.Image)
    path = tmp_path / "pil.tsv"
    assert export_vlmevalkit(rows, path) == 2 * sum(len(r["json"]["pairs"]) for r in rows)
    out = read_tsv(path)
    with Image.open(io.BytesIO(base64.b64decode(out[0]["image"]))) as image:
        assert image.size == rows[0]["jpg"].size
        assert image.convert("RGB").tobytes() == rows[0]["jpg"].convert("RGB").tobytes()


@pytest.mark.parametrize("setting", SETTINGS)
def test_official_csv(tmp_path, images, records, setting):
    chosen = [r for r in records if r["setting"] == setting]
    path = tmp_path / f"{setting}.csv"
    assert export_official_csv(images, path, settings=[setting]) == 2 * len(chosen)
    rows = read_csv(path)
    assert list(rows[0]) == list(OFFICIAL_COLUMNS)
    assert len(rows) == 2 * len(chosen)
    for i, record in enumerate(chosen):
        pos, neg = rows[2 * i], rows[2 * i + 1]
        assert (pos["qtype"], neg["qtype"]) == (f"{setting}_pos", f"{setting}_neg")
        assert pos["image"] == neg["image"] == record["image_file"]
        for row, q in ((pos, record["positive"]), (neg, record["negative"])):
            assert row["question"] == q["question"]
            choices = [row[f"choice{j}"] for j in range(1, 6)]
            assert choices == q["options"]
            assert choices[int(row["gt_index"])] == q["options"][LETTERS.index(q["answer"])]
            assert int(row["gt_index"]) == LETTERS.index(q["answer"])


def test_official_csv_of_all_splits_and_of_plain_records(tmp_path, images, records):
    path = tmp_path / "all.csv"
    assert export_official_csv(datasets.DatasetDict({"test": images}), path) == 2 * len(records)
    plain = tmp_path / "plain.csv"
    export_official_csv([{"json": r} for r in records], plain)
    assert plain.read_bytes() == path.read_bytes()
    qtypes = [row["qtype"] for row in read_csv(path)]
    assert qtypes[0::2] == [f"{r['setting']}_pos" for r in records]
    assert qtypes[1::2] == [f"{r['setting']}_neg" for r in records]


# ---------------------------------------------------------------- plots and text a reader trusts


def labelled(result, sample_build, model="/models/checkpoints/my-vlm-7b"):
    return {**result, "model": model, "prompt": {"name": "official", "max_new_tokens": 2},
            "dataset": {"dataset": "compre_cap", "pretty_name": "FINER-CompreCap", "version": "2.1.0",
                        "manifest_digest": sample_build.manifest["digest"]}}


def test_accuracy_by_k_shows_n_and_a_wilson_interval_per_point(result, sample_build):
    from finer_datasets.eval.plots import accuracy_by_k_figure

    fig = accuracy_by_k_figure(labelled(result, sample_build))
    ax = fig.axes[0]
    # the title names the dataset and the model by name, not a raw path
    assert ax.get_title() == "Paired accuracy by k — my-vlm-7b\nFINER-CompreCap 2.1.0 · strict parser"
    texts = [t.get_text() for t in ax.texts]
    for setting, block in result["settings"].items():
        for k, group in block["by_k"].items():
            assert f"n={group['n_pairs']}" in texts
            low, high = group["ci95"]
            assert low <= group["paired_accuracy"] <= high and high - low > 0
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == len(result["settings"])
    assert sum(len(c.lines[0].get_xdata()) for c in bars) == sum(len(b["by_k"]) for b in result["settings"].values())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "random, uniform (4.00%)" in legend and "random, polarity-aware (6.25%)" in legend
    assert any("Wilson" in t.get_text() for t in fig.texts)


def test_rates_without_a_read_answer_are_not_drawn_as_zero(result, sample_build):
    from finer_datasets.eval.plots import fp_fn_figure

    unread = labelled(result, sample_build)
    unread["settings"] = {name: {**block, "false_positive_rate": None, "false_negative_rate": None}
                          for name, block in result["settings"].items()}
    ax = fp_fn_figure(unread).axes[0]
    assert not ax.patches  # no bar at all, of height 0 or otherwise
    assert [t.get_text() for t in ax.texts].count("n/a") == 2 * len(SETTINGS)
    md = report_markdown(unread)
    assert "| multi_obj | " in md and "| n/a | n/a |" in md
    drawn = fp_fn_figure(labelled(result, sample_build)).axes[0]
    assert len(drawn.patches) == 2 * len(SETTINGS) and "n/a" not in [t.get_text() for t in drawn.texts]


def test_report_defines_the_random_baselines_and_the_intervals(tmp_path, result, sample_build):
    write_report(labelled(result, sample_build), tmp_path, plots=True)
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# FINER evaluation: my-vlm-7b on FINER-CompreCap 2.1.0\n")
    assert "**Random (uniform)**" in md and "(1/5)² = 4%" in md
    assert "**Random (polarity-aware)** (paper, appendix E.6)" in md and "0.5 × 0.125 = 6.25%" in md
    assert "95% CI: percentile bootstrap over pairs, 200 resamples, seed 0; by k and by position: Wilson score" in md
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["intervals"] == {"ci95": "percentile bootstrap over pairs", "by_k.ci95": "Wilson score interval",
                                 "by_position.ci95": "Wilson score interval"}
    assert data["headline"]["comparable_with_table1"] == "official"
    assert set(data["by_parser"]) == {"strict", "official"}


def test_wilson_interval_known_values():
    from finer_datasets.eval.intervals import wilson_ci

    assert wilson_ci(0, 0) is None
    assert wilson_ci(1, 4) == pytest.approx([4.5586, 69.9358], abs=1e-3)  # a 25% "spike" on n=4
    assert wilson_ci(0, 10) == pytest.approx([0.0, 27.7532], abs=1e-3)
    assert wilson_ci(10, 10) == pytest.approx([72.2468, 100.0], abs=1e-3)


def test_quality_levels(result):
    from finer_datasets.errors import QualityError
    from finer_datasets.eval.quality import assess, require_usable

    ok = assess(result)
    assert ok["status"] == "ok" and ok["message"] is None
    require_usable(ok)
    overall = dict(result["overall"], unparseable=result["overall"]["answered"])
    unusable = assess({**result, "overall": overall})
    assert unusable["status"] == "unusable" and "likely causes" in unusable["message"]
    with pytest.raises(QualityError, match="no usable result") as info:
        require_usable(unusable)
    assert info.value.exit_code == 7
    half = assess({**result, "overall": dict(overall, unparseable=overall["answered"] // 2)}, max_unparseable=0.6)
    assert half["status"] == "ok"
