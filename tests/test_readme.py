"""The README's two set-up commands: exactly two at the top, and CI runs the test one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands():
    head = (ROOT / "README.md").read_text().split("\n---\n", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", head, flags=re.S)


def test_two_setup_commands_at_the_top():
    build, tests = setup_commands()
    assert "finer build compre_cap --sample" in build and "pip install" in build
    assert "pytest" in tests and "pip install" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
