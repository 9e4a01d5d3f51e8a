"""FINER-CompreCap keeps the paper's per-k sampling by default (Table 9 counts it so), sets its
counts beside Tables 7 and 9 in the card, and lists what differs from the paper."""

import subprocess
import sys
from collections import Counter

from finer_datasets.core.manifest import verify
from finer_datasets.core.reader import iter_records


def finer(*args):
    """The command line in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "finer_datasets.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_the_default_is_per_k_and_the_card_sets_each_k_beside_tables_7_and_9(sample_build):
    manifest, card = sample_build.manifest, (sample_build.out / "README.md").read_text()
    assert manifest["builder"]["options"]["sampling"] == "per-k"
    counts = manifest["counts"]
    assert counts["paper"]["pairs_by_k"]["multi_obj"] == {"1": 560, "2": 560, "3": 560, "4": 558, "5": 535, "6": 377}
    assert counts["paper"]["scene_graph"] == {"objects": 3505, "attributes": 4509, "relations": 3494}
    # per-k: an image with n distinct objects has one multi_obj pair for each k up to min(6, n)
    assert counts["pairs_by_k"]["multi_obj"]["1"] == counts["images"]
    assert "Sampling `per-k`: one pair for every k" in card
    pairs = counts["pairs"]
    for row in (f"| `multi_obj` | {pairs['multi_obj']} | {2 * pairs['multi_obj']} | 3,150 | 6,300 |",
                f"| `multi_attr` | {pairs['multi_attr']} | {2 * pairs['multi_attr']} | 1,669 | 3,338 |",
                f"| `multi_rel` | {pairs['multi_rel']} | {2 * pairs['multi_rel']} | 2,140 | 4,280 |",
                f"| `wh` | {pairs['wh']} | {2 * pairs['wh']} | 1,583 | 3,166 |", "| 377 | 12.0% |", "| 307 | 14.3% |", "| 3,505 | 6.26 |", "| 3,494 | 6.24 |"):
        assert row in card, row
    k1 = counts["pairs_by_k"]["multi_attr"]["1"]
    share = 100 * k1 / counts["pairs"]["multi_attr"]
    assert f"| `multi_attr` | 1 | {k1} | {share:.1f}% | 966 | 57.9% |" in card
    assert f"| objects | {counts['objects']} | {counts['objects'] / counts['images']:.2f} | 3,505 |" in card
    differences = card.split("## Differences from the paper", 1)[1].split("\n## ", 1)[0]
    for text in ("Qwen3-14B", "Qwen2.5-VL-72B", "Gemini-2.0-Flash", "No human step", "share an object", "966"):
        assert text in differences, text


def test_table9_sampling_from_the_command_line_asks_one_multi_obj_pair_per_image(tmp_path):
    run = finer("build", "compre_cap", "--sample", "--sampling", "table9", "--out", tmp_path / "o")
    assert run.returncode == 0, run.stderr
    folder = tmp_path / "o"
    manifest = verify(folder)
    assert manifest["builder"]["options"]["sampling"] == "table9"
    recs = list(iter_records(folder, manifest))
    for record in recs:
        names = {o["name"].lower() for o in record["scene_graph"]["objects"] if o["negatives"]}
        assert [p["k"] for p in record["pairs"] if p["setting"] == "multi_obj"] == [min(6, len(names))]
        per_object = Counter(p["pair_id"].rsplit("_k", 1)[0] for p in record["pairs"] if p["setting"] == "multi_attr")
        assert set(per_object.values()) == {1}
    assert manifest["counts"]["pairs"]["multi_obj"] == len(recs)
    assert "too_few_objects" not in manifest["counts"]["skips"]  # per-k's skips for k > n are gone
    card = (folder / "README.md").read_text()
    assert "Sampling `table9`: one pair per image" in card and "--sampling table9" in card
