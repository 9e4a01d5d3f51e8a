"""The suite never touches the user's Hugging Face cache (tests/conftest.py redirects it)."""

import os
from pathlib import Path

import datasets
import huggingface_hub.constants



def test_hugging_face_caches_point_into_the_suites_temporary_folder(sample_build):
    home = Path.home().resolve()
    suite = Path(os.environ["HF_HOME"]).resolve()
    assert suite.name.startswith("finer-tests-hf-")
    for path in (datasets.config.HF_DATASETS_CACHE, huggingface_hub.constants.HF_HUB_CACHE, os.environ["HF_HOME"]):
        resolved = Path(path).resolve()
        assert resolved.is_relative_to(suite), path
        assert not resolved.is_relative_to(home / ".cache")
    datasets.load_dataset(str(sample_build.out), split="test")  # writes its cache ... here, not in ~/.cache
    assert any(Path(datasets.config.HF_DATASETS_CACHE).rglob("*.arrow"))
