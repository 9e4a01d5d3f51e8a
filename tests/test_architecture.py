"""The architecture holds: layering contracts (import-linter), small modules, one definition of
each shared constant, no dataset named in the core."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "finer_datasets"
MAX_LINES = 400


def library_modules():
    return sorted(p for d in (LIBRARY, ROOT / "builders") for p in d.rglob("*.py") if "maintenance" not in p.parts)


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed (pip install -e '.[test]')"
    run = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def all_modules():
    """The library and builders, plus the scripts people run (baselines/, bench/)."""
    return library_modules() + sorted(p for d in ("baselines", "bench") for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


CONSTANT_TABLES = {
    "option letters": re.compile(r"""["']ABCDE["']"""),
    "setting list": re.compile(r"""\(\s*["']multi_obj["'],\s*["']multi_attr["'],\s*["']multi_rel["'],\s*["']wh["']\s*\)"""),
    "entropy thresholds of the paper": re.compile(r"Thresholds\(object=0\.8"),
    "negatives per element": re.compile(r"NEGATIVES_PER_ELEMENT\s*=\s*4"),
}


@pytest.mark.parametrize("name", list(CONSTANT_TABLES))
def test_each_shared_constant_is_defined_once(name):
    pattern = CONSTANT_TABLES[name]
    hits = [p.relative_to(ROOT).as_posix() for p in library_modules() if pattern.search(p.read_text())]
    assert len(hits) <= 1, f"{name} defined in {hits}"


def test_the_core_names_no_dataset():
    names = [p.name for p in (ROOT / "builders").iterdir() if (p / "builder.py").is_file()]
    core = "\n".join(p.read_text() for p in (LIBRARY / "core").rglob("*.py"))
    assert names and not [n for n in names if re.search(rf"\b{n}\b", core)]
