"""The published source-format schemas (schemas/*.schema.json) describe what the builders read: the
bundled samples and dummy data validate, and each structurally malformed CompreCap fixture that the
reader refuses is refused by the schema too (content problems the reader skips stay valid)."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from finer_datasets.core.registry import get_builder
from finer_datasets.core.validation import validator
from finer_datasets.errors import SourceError
from finer_datasets.schemas import FOLDER, schema_path

FIXTURES = Path(__file__).parent / "fixtures" / "compre_cap"
STRUCTURAL = ("missing_category", "missing_image", "not_list", "wrong_type_category", "wrong_type_info",
              "wrong_type_relation")
CONTENT = ("odd_content", "corrupt_image", "missing_image_file", "not_an_image")


def test_every_schema_is_a_valid_draft_2020_12_schema_with_an_id():
    import jsonschema

    for path in sorted(FOLDER.glob("*.schema.json")):
        schema = json.loads(path.read_text("utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(path.name), path


@pytest.mark.parametrize("folder", ["sample", "dummy_data"])
def test_bundled_compre_cap_sources_follow_the_published_schema(folder):
    source = getattr(get_builder("compre_cap"), "sample_dir" if folder == "sample" else "dummy_data_dir")()
    assert validator(schema_path("compre_cap_anno")).is_valid(json.loads((source / "anno.json").read_text("utf-8")))


@pytest.mark.parametrize("case", STRUCTURAL + CONTENT)
def test_the_schema_refuses_what_the_reader_refuses_for_structure(case):
    anno = json.loads((FIXTURES / case / "anno.json").read_text("utf-8"))
    builder = get_builder("compre_cap")
    refused = True
    try:
        for index, record in enumerate(anno if isinstance(anno, list) else [anno]):
            builder._check_record(FIXTURES / case / "anno.json", index, record)
        refused = not isinstance(anno, list)
    except SourceError:
        pass
    assert refused == (case in STRUCTURAL)
    assert validator(schema_path("compre_cap_anno")).is_valid(anno) == (case not in STRUCTURAL)


def test_bundled_docci_and_pixmo_sources_follow_the_published_schemas():
    docci = get_builder("docci").sample_dir() / "docci_descriptions.jsonlines"
    lines = [json.loads(line) for line in docci.read_text("utf-8").splitlines() if line.strip()]
    assert lines and all(validator(schema_path("docci_line")).is_valid(line) for line in lines)
    rows = [row for path in sorted((get_builder("tuning").sample_dir() / "data").rglob("*.parquet"))
            for row in pq.read_table(path).to_pylist()]
    assert rows and all(validator(schema_path("pixmo_cap_row")).is_valid(row) for row in rows)
    assert not validator(schema_path("pixmo_cap_row")).is_valid({"image_url": "https://x.test/a.jpg"})
