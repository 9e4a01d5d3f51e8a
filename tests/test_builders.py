"""Every registered builder, tested from its dummy data (finer_datasets.testing.builder_tests).

Adding a folder under builders/ adds its rows here; nothing is listed by hand.
"""

import pytest

from finer_datasets.core.registry import builder_names, get_builder
from finer_datasets.testing.builder_tests import CHECKS


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", builder_names())
def test_builder(name, check, tmp_path):
    CHECKS[check](get_builder(name), tmp_path)


def test_every_builder_folder_is_complete():
    for name in builder_names():
        folder = get_builder(name).folder()
        for required in ("builder.py", "VERSION", "RELEASE_NOTES.md", "dummy_data", "sample"):
            assert (folder / required).exists(), f"{name}: {required} is missing"


def test_card_templates_and_schemas_live_at_the_top_level_once():
    """The design card's layout: card templates in hub_cards/, published JSON Schemas in schemas/, one
    definition each (no copy left beside the code)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name in builder_names():
        builder = get_builder(name)
        if not builder.folder().resolve().is_relative_to(root / "builders"):
            continue  # a builder registered from another folder (the toy builder test) keeps its own
        assert builder.card_path() == root / "hub_cards" / f"{name}.md", name
        assert Path(builder.record_schema).parent == root / "schemas", name
    stray = [p for p in [*root.joinpath("finer_datasets").rglob("*.schema.json"), *root.joinpath("builders").rglob("*.schema.json"),
                         *root.joinpath("builders").rglob("card.md")]]
    assert not stray, stray
