"""The lmms-eval task package: YAML schema, the task functions on a locally built dataset, and the
aggregation equal to `finer score`. With lmms-eval installed, its own loader and evaluator run too."""

import importlib.util
import json
import random

import datasets
import pytest
import yaml

from finer_datasets.cli import main
from finer_datasets.constants import LETTERS, SETTINGS
from finer_datasets.eval import lmms
from finer_datasets.eval.prompts import official_prompt

# The fields lmms-eval's TaskConfig and GroupConfig accept (lmms_eval/api/task.py and api/group.py, 0.7.3).
TASK_FIELDS = {
    "task", "task_alias", "tag", "group", "group_alias", "dataset_path", "dataset_name", "dataset_kwargs",
    "training_split", "validation_split", "test_split", "fewshot_split", "full_docs", "process_results_use_image",
    "process_docs", "doc_to_visual", "doc_to_text", "doc_to_target", "doc_to_choice", "doc_to_messages",
    "process_results", "use_prompt", "description", "target_delimiter", "fewshot_delimiter", "fewshot_config",
    "num_fewshot", "metric_list", "output_type", "generation_kwargs", "repeats", "filter_list",
    "should_decontaminate", "doc_to_decontamination_query", "cluster_key", "score_key", "metadata",
    "lmms_eval_specific_kwargs", "model_specific_generation_kwargs", "model_specific_target_kwargs",
    "reasoning_tags", "auto_strip_thinking", "include",
}
GROUP_FIELDS = {"group", "group_alias", "task", "aggregate_metric_list", "metadata"}


def load_utils(folder):
    """utils.py loaded by path, as lmms-eval's `!function utils.x` does."""
    spec = importlib.util.spec_from_file_location("utils", folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(path):
    """A task YAML with its `include` merged and every `!function` resolved, lmms-eval's way."""
    utils = load_utils(path.parent)

    class Loader(yaml.SafeLoader):
        pass

    def function(loader, node):
        module, name = loader.construct_scalar(node).rsplit(".", 1)
        assert module == "utils"
        return getattr(utils, name)

    Loader.add_constructor("!function", function)
    config = yaml.load(path.read_text(), Loader=Loader)
    if "include" in config:
        base = load_config(path.parent / config.pop("include"))
        config = {**base, **config}
    return config


def test_shipped_task_files_are_what_the_generator_writes():
    shipped = {p.name: p.read_text() for p in lmms.TASKS_DIR.iterdir() if p.suffix != ".pyc" and p.is_file()
               and p.name != "__init__.py"}
    assert shipped == lmms.shipped_files()
    assert {"finer_compre_cap.yaml", "finer_docci.yaml", "finer_docci_wh.yaml"} <= set(shipped)


@pytest.mark.parametrize("group, hub_id", sorted(lmms.BENCHMARKS.items()))
def test_task_yamls_follow_the_lmms_eval_schema(group, hub_id):
    folder = lmms.TASKS_DIR
    config = yaml.safe_load((folder / f"{group}.yaml").read_text())
    assert set(config) <= GROUP_FIELDS and config["task"] == [f"{group}_{s}" for s in SETTINGS]
    assert [m["metric"] for m in config["aggregate_metric_list"]] == ["acc_paired", "acc_paired_official", "acc_question"]
    assert all(m["weight_by_size"] and m["aggregation"] == "mean" for m in config["aggregate_metric_list"])
    for setting in SETTINGS:
        path = folder / f"{group}_{setting}.yaml"
        raw = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
        assert set(raw) <= TASK_FIELDS and raw["task"] == f"{group}_{setting}"
        config = load_config(path)
        assert set(config) <= TASK_FIELDS
        assert (config["dataset_path"], config["test_split"], config["output_type"]) == (hub_id, "test", "generate_until")
        assert config["generation_kwargs"]["max_new_tokens"] == 2 and config["generation_kwargs"]["temperature"] == 0
        assert config["lmms_eval_specific_kwargs"] == {"default": {"prompt": "official"}}
        for key in ("process_docs", "doc_to_visual", "doc_to_text", "process_results"):
            assert callable(config[key]), key
        assert config["process_docs"].__name__ == f"process_docs_{setting}"
        assert [(m["metric"], m["aggregation"].__name__, m["higher_is_better"]) for m in config["metric_list"]] == [
            ("acc_paired", "paired_accuracy", True), ("acc_paired_official", "paired_accuracy_official", True),
            ("acc_question", "question_accuracy", True)]


@pytest.fixture(scope="module")
def images(sample_build):
    return datasets.load_dataset(str(sample_build.out), split="test")


@pytest.fixture(scope="module")
def recorded(sample_build, tmp_path_factory):
    """A model's answers as a predictions file: right 70% of the time, else a random letter or prose."""
    from finer_datasets.core.reader import iter_records
    from finer_datasets.mcq.records import pair_rows

    rng = random.Random(3)
    answers = {}
    for record in iter_records(sample_build.out, sample_build.manifest):
        for pair in pair_rows(record):
            for polarity in ("positive", "negative"):
                q = pair[polarity]
                answers[q["question_id"]] = q["answer"] if rng.random() < 0.7 else rng.choice([*LETTERS, "Yes", "(C"])
    path = tmp_path_factory.mktemp("recorded") / "predictions.jsonl"
    path.write_text("".join(json.dumps({"question_id": k, "response": v}) + "\n" for k, v in answers.items()))
    return path, answers


def task_items(images, answers, setting):
    docs = getattr(lmms, f"process_docs_{setting}")(images)
    return docs, [lmms.process_results(doc, [answers[doc["question_id"]]])["acc_paired"] for doc in docs]


def test_task_functions_on_a_local_build(images, sample_build, recorded):
    for setting in SETTINGS:
        docs, items = task_items(images, recorded[1], setting)
        assert len(docs) == 2 * sample_build.manifest["counts"]["pairs"][setting]
        doc = docs[0]
        assert lmms.doc_to_text(doc) == official_prompt(doc["question"], doc["options"])
        assert lmms.doc_to_text(doc, {"prompt": "appendix-d"}).startswith(doc["question"] + "\nA. ")
        (visual,) = lmms.doc_to_visual(doc)
        assert visual.mode == "RGB" and visual.size == doc["image"].size
        assert {item["setting"] for item in items} == {setting}
        assert [item["pair_id"] for item in items[:2]] == [doc["pair_id"]] * 2
        json.dumps(items)  # lmms-eval logs them: plain JSON


def test_aggregation_equals_finer_score(images, sample_build, recorded, tmp_path):
    path, answers = recorded
    assert main(["score", str(sample_build.out), "--predictions", str(path), "--out", str(tmp_path), "--bootstrap",
                 "0"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    pooled, sizes = [], []
    for setting in SETTINGS:
        _, items = task_items(images, answers, setting)
        block = report["settings"][setting]
        assert lmms.paired_accuracy(items) == pytest.approx(block["paired_accuracy"])
        assert lmms.question_accuracy(items) == pytest.approx(block["question_accuracy"])
        pooled.append(lmms.paired_accuracy(items))
        sizes.append(len(items))
    # the group's mean weighted by size (lmms-eval's aggregate_metric_list) is the pooled paired accuracy
    assert sum(p * n for p, n in zip(pooled, sizes)) / sum(sizes) == pytest.approx(report["overall"]["paired_accuracy"])
    assert 0 < report["overall"]["paired_accuracy"] < 100


# The rows lmms-eval 0.7.3's results table (lmms_eval.utils.make_table) leaves out: names starting with
# "paired_" (its --baseline comparison columns) or ending with one of these suffixes (shown as columns).
TABLE_SKIPS_PREFIX = ("paired_",)
TABLE_SKIPS_SUFFIX = ("_stderr", "_stderr_clt", "_stderr_clustered", "_expected_accuracy", "_consensus_accuracy",
                      "_internal_variance", "_consistency_rate")


def test_every_metric_is_a_row_of_lmms_eval_results_table(images, recorded):
    names = [m["metric"] for m in load_config(lmms.TASKS_DIR / "finer_compre_cap_wh.yaml")["metric_list"]]
    _, items = task_items(images, recorded[1], "wh")
    assert set(names) == set(lmms.process_results(items[0], ["A"])) == set(lmms.METRICS)
    for name in names:
        assert not name.startswith(TABLE_SKIPS_PREFIX) and not name.endswith(TABLE_SKIPS_SUFFIX), name
    assert sorted(names)[0] == "acc_paired"  # the table sorts metrics by name: the headline comes first


def test_official_aggregation_equals_finer_score_official(images, sample_build, recorded, tmp_path):
    path, answers = recorded
    assert main(["score", str(sample_build.out), "--predictions", str(path), "--out", str(tmp_path), "--bootstrap",
                 "0", "--parser", "official"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    for setting in SETTINGS:
        _, items = task_items(images, answers, setting)
        assert lmms.paired_accuracy_official(items) == pytest.approx(report["settings"][setting]["paired_accuracy"])
        assert lmms.paired_accuracy(items) == pytest.approx(
            report["by_parser"]["strict"]["settings"][setting]["paired_accuracy"])


def test_pairs_cut_by_a_limit_are_left_out(images, recorded):
    _, items = task_items(images, recorded[1], "wh")
    assert lmms.paired_accuracy(items[:5]) == lmms.paired_accuracy(items[:4])
    pairs, responses = lmms.pairs_from_items(items[:5])
    assert len(pairs) == 2 and len(responses) == 4
    assert lmms.paired_accuracy([]) == 0.0


def test_finer_export_writes_tasks_pinned_to_the_dataset(sample_build, tmp_path, capsys):
    out = tmp_path / "tasks"
    assert main(["export", str(sample_build.out), "--format", "lmms-eval", "--out", str(out)]) == 0
    assert "--include_path" in capsys.readouterr().out
    config = load_config(out / "finer_compre_cap_wh.yaml")
    assert config["dataset_path"] == str(sample_build.out.resolve()) and "dataset_kwargs" not in config
    assert main(["export", str(sample_build.out), "--format", "lmms-eval", "--out", str(tmp_path / "t2"),
                 "--prompt", "appendix-d"]) == 0
    config = load_config(tmp_path / "t2" / "finer_compre_cap_wh.yaml")
    assert config["generation_kwargs"]["max_new_tokens"] == 3
    assert config["lmms_eval_specific_kwargs"]["default"]["prompt"] == "appendix-d"
    assert "dataset_kwargs:\n  revision: v2.1.0\n" in lmms.task_yamls(dataset="finer/compre_cap", revision="v2.1.0")[
        "_finer_compre_cap_template_yaml"]


# ---------------------------------------------------------------- lmms-eval itself, when installed


def test_lmms_eval_loads_and_runs_the_tasks(sample_build, recorded, tmp_path):
    pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (it is not a test dependency)")
    import lmms_eval.api.model
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    folder = tmp_path / "tasks"
    lmms.write_tasks(folder, dataset=str(sample_build.out.resolve()))
    answers = recorded[1]

    class Replay(lmms_eval.api.model.lmms):
        def generate_until(self, requests):
            out = []
            for request in requests:
                _, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
                doc = self.task_dict[task][split][doc_id]
                assert gen_kwargs["max_new_tokens"] == 2 and doc_to_visual(doc)[0].mode == "RGB"
                out.append(answers[doc["question_id"]])
            return out

        def loglikelihood(self, requests):
            raise NotImplementedError

        def generate_until_multi_round(self, requests):
            raise NotImplementedError

    manager = TaskManager(include_path=str(folder))
    assert {f"finer_compre_cap_{s}" for s in SETTINGS} | {"finer_compre_cap"} <= set(manager.all_tasks)
    results = simple_evaluate(model=Replay(), tasks=["finer_compre_cap"], task_manager=manager)
    assert main(["score", str(sample_build.out), "--predictions", str(recorded[0]), "--out", str(tmp_path / "r"),
                 "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    for setting in SETTINGS:
        got = results["results"][f"finer_compre_cap_{setting}"]["acc_paired,none"]
        assert got == pytest.approx(report["settings"][setting]["paired_accuracy"])
    assert results["groups"]["finer_compre_cap"]["acc_paired,none"] == pytest.approx(
        report["overall"]["paired_accuracy"])
    # lmms-eval's own results table shows the paired accuracy under both parsers
    from lmms_eval.utils import make_table

    table = make_table(results)
    for metric in lmms.METRICS:
        assert f"|{metric}" in table.replace(" ", ""), metric
