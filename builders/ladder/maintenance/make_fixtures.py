"""Write the ladder's checked-in sources: tiny FINER benchmark builds (no model, no network).

    .venv/bin/python builders/ladder/maintenance/make_fixtures.py

* ``builders/ladder/dummy_data/`` -- FINER-CompreCap built from its ``dummy_data/`` (one source: the
  folder itself holds ``manifest.json``); the registry tests build the ladder from it;
* ``builders/ladder/sample/compre_cap/`` and ``sample/docci/`` -- FINER-CompreCap and FINER-DOCCI built
  from their ``dummy_data/`` (DOCCI's model stages answered by the scripted stand-in model): what
  ``finer build ladder --sample`` reads.

Run it again when a benchmark's record format changes; the folders are ordinary builds (``finer
verify`` checks them) and stay valid sources as they are.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from finer_datasets import get_builder
from finer_datasets.testing.builder_tests import dummy_build

HERE = Path(__file__).resolve().parents[1]


def _build(name: str, target: Path, scratch: Path) -> None:
    out = scratch / name
    dummy_build(get_builder(name), out)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(out, target)
    print(f"wrote {target}")


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        _build("compre_cap", HERE / "dummy_data", Path(scratch) / "dummy")
        for name in ("compre_cap", "docci"):
            _build(name, HERE / "sample" / name, Path(scratch) / "sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
