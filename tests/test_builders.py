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
        for required in ("builder.py", "VERSION", "RELEASE_NOTES.md", "card.md", "dummy_data", "sample"):
            assert (folder / required).exists(), f"{name}: {required} is missing"
