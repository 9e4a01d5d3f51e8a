"""Packaging: light imports, the wheel carries schemas/builders/cards/vocab, code hygiene."""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import finer_datasets

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = "import sys, finer_datasets; print(sorted(m for m in ('torch', 'datasets', 'PIL', 'tqdm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_is_curated():
    for name in finer_datasets.__all__:
        assert getattr(finer_datasets, name) is not None
    with pytest.raises(AttributeError):
        finer_datasets.not_there  # noqa: B018


def test_cli_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "finer_datasets.cli", "build", "compre_cap", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--negatives" in out.stdout and "--sample" in out.stdout
    assert "FINER-CompreCap options" in out.stdout and "(default: 0)" in out.stdout and "default: None" not in out.stdout


def python_files():
    return [p for d in ("finer_datasets", "builders") for p in (ROOT / d).rglob("*.py")]


def test_no_assert_and_no_bare_except_in_library_code():
    for path in python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            assert not isinstance(node, ast.Assert), f"{path}:{node.lineno}: assert in library code"
            if isinstance(node, ast.ExceptHandler):
                assert node.type is not None, f"{path}:{node.lineno}: bare except"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True, capture_output=True,
    )
    return next(out.glob("finer_datasets-*.whl"))


def test_wheel_ships_schemas_builders_cards_and_sample_but_no_maintenance_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in [
        "finer_datasets/schemas/mcq_image.schema.json",
        "finer_datasets/schemas/tuning_image.schema.json",
        "finer_datasets/schemas/manifest.schema.json",
        "finer_datasets/schemas/manifest-v1.schema.json",
        "finer_datasets/schemas/negatives.schema.json",
        "finer_datasets/schemas/docci_line.schema.json",
        "finer_datasets/schemas/compre_cap_anno.schema.json",
        "finer_datasets/hub_cards/compre_cap.md",
        "finer_datasets/hub_cards/docci.md",
        "finer_datasets/hub_cards/tuning.md",
        "finer_datasets/scene_graph/vocab/lexicon.json",
        "finer_datasets/llm/prompts/negatives.object.v1.md",
        "finer_datasets/builders/compre_cap/builder.py",
        "finer_datasets/builders/compre_cap/VERSION",
        "finer_datasets/builders/compre_cap/RELEASE_NOTES.md",
        "finer_datasets/builders/compre_cap/prompts/rewrite_attribute.v1.md",
        "finer_datasets/builders/compre_cap/sample/anno.json",
        "finer_datasets/builders/compre_cap/sample/transcript.jsonl",
        "finer_datasets/builders/compre_cap/sample/images/000000000012.jpg",
        "finer_datasets/builders/compre_cap/dummy_data/anno.json",
    ]:
        assert required in names, required
    assert not [n for n in names if "/maintenance/" in n or "__pycache__" in n]
    # every builder folder of the repository is in the wheel without being listed anywhere
    for folder in (ROOT / "builders").iterdir():
        if (folder / "builder.py").is_file():
            assert f"finer_datasets/builders/{folder.name}/builder.py" in names


def test_unpacked_wheel_builds_the_sample_on_its_own(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import finer_datasets, sys; from finer_datasets.cli import main;"
        "assert finer_datasets.__file__.startswith(sys.argv[1]), finer_datasets.__file__;"
        "sys.exit(main(['build', 'compre_cap', '--sample', '--out', sys.argv[2], '--no-progress']))"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", code, str(site), str(tmp_path / "out")], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()
