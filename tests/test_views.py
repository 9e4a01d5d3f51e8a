"""Flat views are real columns: `image` is a declared, lazily decoded Image feature holding a path into
a content-addressed store (each image once), so a view pickles under `spawn`, survives
`select_columns`, `with_format("torch")` and `save_to_disk`, and its images are the shards' bytes."""

import multiprocessing
import pickle
import tarfile

import datasets
import pytest
import torch

from finer_datasets import load_finer
from finer_datasets.core.views import STORE_DIR

datasets.disable_progress_bars()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def questions(sample_build, store):
    return load_finer(str(sample_build.out), "questions", split="test", cache_dir=str(store))


def shard_images(folder):
    with tarfile.open(folder / "data" / "test-00000.tar") as tar:
        return {m.name.split(".")[0]: tar.extractfile(m).read() for m in tar if m.name.endswith(".jpg")}


def test_image_is_a_declared_column_of_paths_and_each_image_is_stored_once(questions, sample_build, store):
    assert questions.features["image"] == datasets.Image()
    assert "image_index" not in questions.column_names
    raw = questions.cast_column("image", datasets.Image(decode=False))
    paths = raw["image"]
    assert all(cell["bytes"] is None and cell["path"] for cell in paths)
    assert len({cell["path"] for cell in paths}) == 12 == len(list((store / STORE_DIR).glob("??/*.jpg")))
    images = shard_images(sample_build.out)
    for row, cell in zip(raw.select_columns(["image_id"]), paths):
        assert open(cell["path"], "rb").read() == images[row["image_id"]]  # the source bytes, byte for byte


def _first_sizes(batch):
    return [tuple(row["image"].size) for row in batch]


def test_a_view_pickles_and_feeds_a_spawn_dataloader(questions):
    clone = pickle.loads(pickle.dumps(questions))
    assert clone[5]["question"] == questions[5]["question"] and clone[5]["image"].size == (320, 240)
    loader = torch.utils.data.DataLoader(questions.select(range(8)), batch_size=4, num_workers=1,
                                         multiprocessing_context=multiprocessing.get_context("spawn"),
                                         collate_fn=_first_sizes)
    assert [size for batch in loader for size in batch] == [(320, 240)] * 8


def test_select_columns_torch_format_and_save_to_disk_keep_the_image(questions, tmp_path):
    picked = questions.select_columns(["question", "image"])
    assert picked.column_names == ["question", "image"] and picked[0]["image"].size == (320, 240)
    tensor = questions.with_format("torch")[0]["image"]
    assert isinstance(tensor, torch.Tensor) and tuple(tensor.shape) == (3, 240, 320)
    questions.save_to_disk(str(tmp_path / "saved"))
    again = datasets.load_from_disk(str(tmp_path / "saved"))
    assert again.features == questions.features and again["question_id"] == questions["question_id"]
    assert again[3]["image"].tobytes() == questions[3]["image"].tobytes()


@pytest.mark.parametrize("view", ["trl", "sft"])
def test_a_preference_view_of_a_benchmark_is_one_line_naming_what_it_is(sample_build, view):
    from finer_datasets.errors import UsageError

    with pytest.raises(UsageError) as info:
        load_finer(str(sample_build.out), view, split="test")
    message = str(info.value)
    assert "\n" not in message and "FINER benchmark of MCQ pairs (views: images, pairs, questions, positions)" in message
    assert f"view={view!r}" in message


@pytest.fixture(scope="module")
def tuning_build(tmp_path_factory):
    from test_tuning_build import build_tuning

    return build_tuning(tmp_path_factory.mktemp("tuning") / "sample").out


@pytest.mark.parametrize("view", ["pairs", "questions"])
def test_a_benchmark_view_of_finer_tuning_is_one_line_naming_what_it_is(view, tuning_build):
    from finer_datasets.errors import UsageError

    with pytest.raises(UsageError, match=r"FINER-Tuning preference dataset \(DPO tuples\) \(views: images, trl, sft\)"):
        load_finer(str(tuning_build), view)
