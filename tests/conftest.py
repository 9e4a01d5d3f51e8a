"""Shared fixtures: the bundled sample, dummy data, bad-source factories and one sample build.

The whole suite runs with its own Hugging Face cache: ``HF_HOME`` / ``HF_DATASETS_CACHE`` /
``HF_HUB_CACHE`` point into a temporary folder before ``datasets`` is imported, so no test reads
or writes the user's ``~/.cache`` (tests/test_isolation.py checks it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_HF_HOME = Path(tempfile.mkdtemp(prefix="finer-tests-hf-"))
for _name, _sub in (("HF_HOME", ""), ("HF_DATASETS_CACHE", "datasets"), ("HF_HUB_CACHE", "hub"),
                    ("HUGGINGFACE_HUB_CACHE", "hub"), ("XDG_CACHE_HOME", "xdg")):
    os.environ[_name] = str(_HF_HOME / _sub) if _sub else str(_HF_HOME)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

from finer_datasets import build, get_builder  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
HF_HOME = _HF_HOME


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HF_HOME, ignore_errors=True)


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
