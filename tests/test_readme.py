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


def test_the_readme_starts_where_a_researcher_starts():
    """Newcomer-first and short: install -> data -> evaluate -> own loop -> train -> versions, at most
    250 lines; builder internals, guarantees and architecture live in docs/ (linked, and present)."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    order = ["## Install", "## 1. Get the data", "## 2. Evaluate a model", "### Evaluation routes",
             "## 3. Use it in your own loop", "## 4. Train with FINER-Tuning", "## 5. Versions", "## More"]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    for heading in ("Never losing data", "Exit codes", "circuit breaker", "## Architecture"):
        assert heading not in text
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).is_file(), link
    assert "(planned)" not in (ROOT / "baselines" / "README.md").read_text()
