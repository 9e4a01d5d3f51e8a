"""Integrity (manifest digest, confined paths, verified scoring and releases, negatives that are in
the image, byte-exact exports) and the command line's one-line errors for bad options."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from faultkit import tree
from finer_datasets import load_finer
from finer_datasets.errors import UsageError


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_an_edited_manifest_fails_verify_and_is_not_released(built, finer, tmp_path):
    edit_manifest(built, lambda m: m.update(version="9.9.9"))
    finer("verify", built).clean_failure(3, "manifest.json", "edited after the build")
    finer("release", built, "--to", tmp_path / "repo").clean_failure(3, "edited after the build")
    assert not (tmp_path / "repo").exists()
    edit_manifest(built, lambda m: m["counts"].update(images=999))
    finer("verify", built).clean_failure(3, "edited after the build")


def test_manifest_paths_cannot_escape_the_dataset(built, finer, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    edit_manifest(built, lambda m: m["files"].append({"path": "../secret.txt", "sha256": "0" * 64, "size": 6}))
    finer("verify", built).clean_failure(3, "manifest.json")
    before = tree(tmp_path)
    finer("release", built, "--to", tmp_path / "repo").clean_failure(3)
    assert tree(tmp_path) == before  # nothing written anywhere


def test_release_refuses_a_non_empty_folder_that_is_not_a_repository_and_leaves_no_git(built, finer, tmp_path):
    target = tmp_path / "papers"
    target.mkdir()
    (target / "draft.tex").write_text("x")
    finer("release", built, "--to", target).clean_failure(4, "not a git repository")
    assert not (target / ".git").exists() and [p.name for p in target.iterdir()] == ["draft.tex"]
    (tmp_path / "file").write_text("x")
    finer("release", built, "--to", tmp_path / "file").clean_failure(2, "is a file")


def test_score_refuses_a_dataset_that_does_not_verify(built, finer, tmp_path, oracle, caplog):
    shard = built / "data" / "test-00000.tar"
    data = bytearray(shard.read_bytes())
    data[5000] ^= 1
    shard.write_bytes(bytes(data))
    finer("score", built, "--predictions", oracle, "--out", tmp_path / "r").clean_failure(3, "does not verify", "sha256")
    assert not (tmp_path / "r").exists()
    run = finer("score", built, "--predictions", oracle, "--out", tmp_path / "r2", "--allow-unverified")
    assert run.code == 0 and "DOES NOT VERIFY" in caplog.text
    report = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert report["dataset"]["verified"] is False
    (built / "build_report.json").unlink()
    finer("score", built, "--predictions", oracle, "--out", tmp_path / "r3").clean_failure(3, "build_report.json: missing")


def test_reports_record_the_dataset_version_and_manifest_digest(sample_build, finer, tmp_path, oracle):
    assert finer("score", sample_build.out, "--predictions", oracle, "--out", tmp_path / "r").code == 0
    dataset = json.loads((tmp_path / "r" / "report.json").read_text())["dataset"]
    assert dataset["dataset"] == "compre_cap" and dataset["version"] == "2.1.0" and dataset["verified"] is True
    assert dataset["manifest_digest"] == sample_build.manifest["digest"]


def test_precomputed_negatives_that_are_in_the_image_are_refused(tmp_path, finer, sample_dir):
    doc = {"format": "finer-negatives/1", "images": {"000000000001": {
        "o0": {"positive": "sun", "negatives": ["tree", "moon", "star", "lamp"]}}}}  # the image has a tree
    path = tmp_path / "neg.json"
    path.write_text(json.dumps(doc))
    finer("build", "compre_cap", "--sample", "--out", tmp_path / "o", "--negatives", path).clean_failure(
        2, str(path), "000000000001", "'o0'", "'tree' names an element present in the same image")


def test_cli_export_images_are_the_source_bytes(sample_build, sample_dir, finer, tmp_path):
    assert finer("export", sample_build.out, "--format", "vlmevalkit", "--out", tmp_path / "x.tsv").code == 0
    source = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (sample_dir / "images").glob("*.jpg")}
    from finer_datasets.eval.export import resolve_image_references

    with (tmp_path / "x.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    exported = {hashlib.sha256(base64.b64decode(image)).hexdigest() for image in resolve_image_references(rows)}
    assert exported == source  # byte for byte, never re-encoded
    assert (tmp_path / "x.tsv").stat().st_size < 3 * sum(p.stat().st_size for p in (sample_dir / "images").glob("*.jpg")) * 60


BAD_OPTIONS = [
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--shard-samples", "-1"], 2, "--shard-samples"),
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--shard-bytes", "0"], 2, "--shard-bytes"),
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--max-skip-rate", "1.5"], 2, "--max-skip-rate"),
    (["build", "no_such_dataset", "--sample", "--out", "{tmp}/o"], 2, "unknown dataset 'no_such_dataset'"),
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--llm-stages", "nope", "--llm-base-url", "http://x/v1",
      "--llm-model", "m"], 2, "--llm-stages"),
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--llm-model", "m"], 2, "--llm-base-url and --llm-model"),
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--llm-timeout", "0"], 2, "--llm-timeout"),
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--llm-breaker-seconds", "-1"], 2, "--llm-breaker-seconds"),
    (["build", "compre_cap", "--source", "{tmp}/missing", "--out", "{tmp}/o"], 2, "source folder not found"),
    (["build", "compre_cap", "--source", "{tmp}/afile", "--out", "{tmp}/o"], 2, "not a folder"),
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--replay", "{tmp}/garbage.jsonl"], 2, "garbage.jsonl"),
    (["build", "compre_cap", "--sample", "--out", "{tmp}/o", "--replay", "{tmp}/missing.jsonl"], 5, "transcript not found"),
    (["build", "compre_cap", "--source", "{tmp}/missing", "--out", "{tmp}/o", "--replay", "sample"], 2,
     "--replay sample goes with --sample"),
    (["score", "{ds}", "--predictions", "{tmp}/p.jsonl", "--out", "{tmp}/r", "--bootstrap", "-5"], 2, "--bootstrap"),
    (["score", "{ds}", "--predictions", "{tmp}/p.jsonl", "--out", "{tmp}/afile"], 2, "is an existing file"),
    (["score", "{ds}", "--predictions", "{tmp}/p.jsonl", "--out", "{tmp}/r", "--setting", "multiobj"], 2, "'multiobj'"),
    (["score", "{tmp}/missing/compre_cap", "--predictions", "{tmp}/p.jsonl", "--out", "{tmp}/r"], 2, "no such dataset folder"),
    (["score", "{ds}", "--predictions", "{tmp}/missing.jsonl", "--out", "{tmp}/r"], 2, "missing.jsonl"),
    (["score", "{ds}", "--predictions", "{tmp}/latin1.jsonl", "--out", "{tmp}/r"], 2, "not UTF-8"),
    (["score", "{ds}", "--predictions", "{tmp}/p.jsonl", "--out", "{tmp}/r", "--revision", "v1"], 2, "--revision"),
    (["export", "{ds}", "--format", "official-csv", "--out", "{tmp}"], 6, "is a folder"),
    (["export", "{ds}", "--format", "official-csv", "--out", "{tmp}/x.csv", "--setting", "whh"], 2, "'whh'"),
    (["export", "{ds}", "--format", "docx", "--out", "{tmp}/x.docx"], 2, "--format"),
    (["verify", "{ds}/data/test-00000.tar"], 3, "is a file"),
    (["verify", "{tmp}/missing"], 3, "no such dataset folder"),
    (["publish", "{ds}", "--repo", "compre_cap", "--dry-run"], 2, "not a Hub repo id"),
    (["publish", "{ds}", "--repo", "a/b/c", "--dry-run"], 2, "not a Hub repo id"),
]


@pytest.mark.parametrize("args,code,culprit", BAD_OPTIONS, ids=[" ".join(a[:1] + a[-2:]) for a, _, _ in BAD_OPTIONS])
def test_bad_options_are_one_line_errors(args, code, culprit, tmp_path, finer, sample_build):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "garbage.jsonl").write_text("this is not a transcript\n")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"question_id": "q\xe9", "response": "A"}\n')
    (tmp_path / "p.jsonl").write_text("")
    filled = [a.format(tmp=tmp_path, ds=sample_build.out) for a in args]
    run = finer(*filled)
    run.clean_failure(code, culprit.format(tmp=tmp_path))
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


def test_load_finer_names_a_bad_setting_or_view(sample_build):
    with pytest.raises(UsageError, match="'multiobj' is not a FINER setting"):
        load_finer(str(sample_build.out), "pairs", setting="multiobj")
    with pytest.raises(UsageError, match="unknown view 'rows'"):
        load_finer(str(sample_build.out), "rows")


def test_the_docs_list_every_exit_code():
    from finer_datasets.errors import EXIT_CODES

    docs = (Path(__file__).resolve().parents[2] / "docs" / "guarantees.md").read_text()
    section = docs.split("## Exit codes and errors", 1)[1].split("\n## ", 1)[0]
    for code in EXIT_CODES:
        assert f"| {code} |" in section, code


def test_git_is_there():  # release tests need git; say so plainly if a machine lacks it
    assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0
