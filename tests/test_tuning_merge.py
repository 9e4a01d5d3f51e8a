"""``--part I/N`` + ``finer merge``: three parts of the sample merge into the one-machine build, byte for byte;
parts are assigned by caption (no prompt in two parts); a conflict between parts is settled by a rule and counted."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from finer_datasets.builders.tuning.source import read_rows
from test_tuning_build import SAMPLE, TUNING, build_tuning, replay_run, scripted_run

from finer_datasets.core.builder import BuildReport
from finer_datasets.core.manifest import file_entry, read_manifest, write_manifest
from finer_datasets.core.merge import CONFLICT_RULE, merge, union_transcripts
from finer_datasets.core.registry import get_builder
from finer_datasets.errors import UsageError, VerificationError
from finer_datasets.preference.construct import part_index
from finer_datasets.testing.builder_tests import folder_files
from finer_datasets.testing.scripted import ScriptedLLM

SHARD = 7  # several shards per split, so shard boundaries are part of the comparison


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A one-machine build and its three parts, each recorded against the scripted model."""
    root = tmp_path_factory.mktemp("parts")
    with scripted_run(root / "single.sqlite") as llm:
        single = build_tuning(root / "single", llm=llm, max_samples=SHARD)
    folders = []
    for i in (1, 2, 3):
        with scripted_run(root / f"part{i}.sqlite") as llm:
            folders.append(build_tuning(root / f"part{i}", llm=llm, part=(i, 3), max_samples=SHARD).out)
    return root, single, folders


def test_three_parts_merge_into_the_one_machine_build_byte_for_byte(parts):
    root, single, folders = parts
    manifests = [json.loads((f / "manifest.json").read_text()) for f in folders]
    assert [m["provenance"]["part"] for m in manifests] == ["1/3", "2/3", "3/3"]
    images = [m["counts"]["images"] for m in manifests]
    assert all(images) and sum(images) == single.manifest["counts"]["images"]
    keys = [set(json.loads(line)["key"] for line in (f / "transcript.jsonl").read_text().splitlines()) for f in folders]
    assert len(keys[0] & keys[1] - {"config"}) == 0  # disjoint work: no prompt asked twice
    assert "part 1/3 of a build split over machines" in (folders[0] / "README.md").read_text()
    merged = merge(TUNING, folders, source=SAMPLE, out=root / "merged", replay=replay_run, progress=False,
                   max_samples=SHARD)
    assert folder_files(merged.out) == folder_files(single.out)
    assert not list(root.glob(".merged.finer-merge*"))


def test_the_merge_checks_that_the_parts_belong_together(parts, tmp_path):
    root, single, folders = parts
    with pytest.raises(UsageError, match=r"missing \[3\]"):
        merge(TUNING, folders[:2], source=SAMPLE, out=tmp_path / "a")
    with pytest.raises(UsageError, match=r"repeated \[1\]"):
        merge(TUNING, [folders[0], folders[0], folders[1]], source=SAMPLE, out=tmp_path / "b")
    with pytest.raises(UsageError, match="is a whole build"):
        merge(TUNING, [single.out, *folders[1:]], source=SAMPLE, out=tmp_path / "c")
    with pytest.raises(UsageError, match="options"):
        merge(TUNING, folders, source=SAMPLE, out=tmp_path / "d", options={"preset": "obj"})
    with pytest.raises(UsageError, match="another source"):
        merge(TUNING, folders, source=TUNING.dummy_data_dir(), out=tmp_path / "e")
    with pytest.raises(UsageError, match="needs the part folders"):
        merge(TUNING, [], source=SAMPLE, out=tmp_path / "f")
    with pytest.raises(UsageError, match="needs replay"):
        merge(TUNING, folders, source=SAMPLE, out=tmp_path / "g")
    with pytest.raises(UsageError, match="cannot be built in parts"):
        get_builder("compre_cap").merge_options(folders, {}, tmp_path)
    assert get_builder("compre_cap").part_of(single.manifest) is None
    assert not any((tmp_path / x).exists() for x in "abcdefg")


def _key(line):
    return json.loads(line)["key"]


def _reseal(folder):
    """Rewrite a part's manifest after an edit of its transcript, as if the part had recorded it."""
    manifest = read_manifest(folder)
    manifest["files"] = [file_entry(folder, f["path"], **{k: v for k, v in f.items()
                                                          if k not in ("path", "sha256", "size")})
                         for f in manifest["files"]]
    write_manifest(folder, {k: v for k, v in manifest.items() if k not in ("digest", "format")})


def test_a_conflict_between_parts_is_settled_by_the_rule_and_counted(parts, tmp_path):
    _, _, folders = parts
    copies = [tmp_path / f"part{i}" for i in (1, 2, 3)]
    for folder, copy in zip(folders, copies):
        shutil.copytree(folder, copy)
    # part 3 also holds one of part 1's answers, with another usage (a server that is not bit-deterministic)
    lines = (copies[0] / "transcript.jsonl").read_text().splitlines()
    entry = json.loads(next(line for line in lines if json.loads(line)["key"] != "config"))
    theirs = dict(entry, usage={**entry["usage"], "prompt_tokens": entry["usage"]["prompt_tokens"] + 1})
    ours = (copies[2] / "transcript.jsonl").read_text().splitlines()
    added = json.dumps(theirs, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    (copies[2] / "transcript.jsonl").write_text("\n".join(sorted([*ours, added], key=_key))
                                                + "\n")
    _reseal(copies[2])
    for order in (copies, copies[::-1]):  # the same answer kept whatever the order of the parts
        entries, conflicts = union_transcripts(order, tmp_path / "union.jsonl")
        assert conflicts == 1 and entries == len(set(map(_key, (tmp_path / "union.jsonl").read_text().splitlines())))
        kept = [line for line in (tmp_path / "union.jsonl").read_text().splitlines()
                if _key(line) == entry["key"]]
        assert kept == [min(added, json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":")))]
    merged = merge(TUNING, copies, source=SAMPLE, out=tmp_path / "merged", replay=replay_run, progress=False,
                   max_samples=SHARD)
    assert merged.manifest["llm"]["merge"] == {"transcript_conflicts": 1, "rule": CONFLICT_RULE}
    same = merge(TUNING, folders, source=SAMPLE, out=tmp_path / "plain", replay=replay_run, progress=False,
                 max_samples=SHARD)
    assert "merge" not in same.manifest["llm"]  # no conflict: the block of a one-machine build
    # another model set-up (here: another temperature) is not a conflict but another build
    setup = json.loads(next(line for line in lines if _key(line) == "config"))
    setup["response"]["llm"]["temperature"] = 0.7
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "transcript.jsonl").write_text(json.dumps(setup, sort_keys=True) + "\n")
    with pytest.raises(UsageError, match="the model set-up differs from another part's"):
        union_transcripts([copies[0], tmp_path / "other"], tmp_path / "union.jsonl")


def test_a_tampered_part_is_refused(parts, tmp_path):
    _, _, folders = parts
    copy = tmp_path / "part2"
    shutil.copytree(folders[1], copy)
    lines = (copy / "transcript.jsonl").read_text().splitlines()
    (copy / "transcript.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(VerificationError, match="transcript.jsonl"):
        merge(TUNING, [folders[0], copy, folders[2]], source=SAMPLE, out=tmp_path / "m", replay=replay_run)


def _shared_caption_source(tmp_path):
    """The sample with one live image's caption given to another live image whose URL hashes to
    another part (the same caption at two URLs)."""
    source = tmp_path / "source"
    shutil.copytree(SAMPLE, source)
    live = [r for r in read_rows(source, BuildReport(strict=False, root=source, policy=TUNING.policy_skips))
            if "/files/" in r.url and (source / "images" / r.url.rsplit("/", 1)[1]).exists()]
    a = live[0]
    b = next(r for r in live if r.file == a.file and part_index(r.url, 3) != part_index(a.url, 3))
    table = pq.read_table(a.file)
    captions = table.column("caption").to_pylist()
    captions[b.row] = captions[a.row]
    pq.write_table(table.set_column(table.schema.get_field_index("caption"), "caption", [captions]), a.file)
    return source


def test_the_same_caption_at_two_urls_is_one_part_even_with_a_nondeterministic_server(tmp_path):
    """Parts are assigned by caption: a server that answers one prompt differently each time it is
    asked (here: each part's server lists the objects in its own order) gives no conflict."""
    source = _shared_caption_source(tmp_path)
    folders = []
    for i in (1, 2, 3):
        llm = ScriptedLLM(handlers=TUNING.scripted_handlers())

        def salted(request, n, llm=llm, i=i):
            answer = llm.respond(request)
            content = json.loads(answer["choices"][0]["message"]["content"])
            if i % 2 and "objects" in content:
                content["objects"].reverse()
                answer["choices"][0]["message"]["content"] = json.dumps(content)
            return 200, json.dumps(answer).encode()

        with scripted_run(tmp_path / f"part{i}.sqlite", hook=salted) as run:
            folders.append(build_tuning(tmp_path / f"part{i}", source=source, llm=run, part=(i, 3)).out)
    keys = [{json.loads(line)["key"] for line in (f / "transcript.jsonl").read_text().splitlines()} - {"config"}
            for f in folders]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])  # no prompt asked in two parts
    merged = merge(TUNING, folders, source=source, out=tmp_path / "merged", replay=replay_run, progress=False)
    assert "merge" not in merged.manifest["llm"] and merged.manifest["counts"]["images"] == 30
