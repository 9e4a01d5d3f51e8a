"""Adding a dataset = adding a folder: a toy builder from a temporary folder is registered, built,
verified and loaded with zero edits to finer_datasets/ (its folder: tests/fixtures/toy_builder)."""

import shutil
from pathlib import Path

import datasets
import pytest

from finer_datasets import build, get_builder, register_builder_folder, verify
from finer_datasets.core.registry import builder_names
from finer_datasets.testing.builder_tests import CHECKS

TOY = Path(__file__).parent / "fixtures" / "toy_builder"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("elsewhere") / "toy_captions"
    shutil.copytree(TOY, folder)
    register_builder_folder(folder)
    return get_builder("toy_captions")


def test_the_toy_builder_builds_verifies_and_loads(toy, tmp_path):
    assert "toy_captions" in builder_names()
    result = build(toy, source=toy.dummy_data_dir(), out=tmp_path / "out", progress=False)
    manifest = verify(result.out)
    assert manifest["counts"]["samples"] == {"train": 3, "validation": 1}
    assert manifest["record_schema"] == "record.schema.json" and manifest["version"] == "0.1.0"
    loaded = datasets.load_dataset(str(result.out))
    assert sorted(loaded) == ["train", "validation"]
    assert loaded["validation"][0]["json"] == {"image": "img2.png", "caption": "two green dots", "words": 3}
    assert loaded["train"][0]["png"].size == (16, 12)
    card = (result.out / "README.md").read_text()
    assert "license: cc0-1.0" in card and "Toy captions" in card


@pytest.mark.parametrize("check", list(CHECKS))
def test_the_toy_builder_passes_every_registry_check(toy, check, tmp_path):
    CHECKS[check](toy, tmp_path)


def test_no_file_of_the_library_names_the_toy_dataset():
    hits = [p for p in (ROOT / "finer_datasets").rglob("*") if p.is_file() and p.suffix in (".py", ".json", ".md", ".toml")
            and "toy_captions" in p.read_text(errors="ignore")]
    assert hits == []
    assert "toy" not in (ROOT / "pyproject.toml").read_text()


def test_a_folder_without_a_builder_is_refused(tmp_path):
    with pytest.raises(Exception, match="no builder.py"):
        register_builder_folder(tmp_path)
