"""Shared fixtures: the bundled sample, dummy data, bad-source factories and one sample build."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from finer_datasets import build, get_builder

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def builder():
    return get_builder("compre_cap")


@pytest.fixture(scope="session")
def sample_dir(builder) -> Path:
    return builder.sample_dir()


@pytest.fixture(scope="session")
def dummy_dir(builder) -> Path:
    return builder.dummy_data_dir()


@pytest.fixture
def make_source(tmp_path, dummy_dir):
    """Copy dummy_data to a temp source, then overlay ``tests/fixtures/compre_cap/<case>/``."""

    made = []

    def make(case: str | None = None) -> Path:
        made.append(case)
        src = tmp_path / f"src-{case or 'dummy'}-{len(made)}"
        shutil.copytree(dummy_dir, src)
        if case is not None:
            shutil.copytree(FIXTURES / "compre_cap" / case, src, dirs_exist_ok=True)
        return src

    return make


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory, builder, sample_dir):
    """The bundled sample, built once with seed 0 (the README's main job)."""
    out = tmp_path_factory.mktemp("builds") / "compre_cap"
    return build(builder, source=sample_dir, out=out, seed=0, progress=False)
