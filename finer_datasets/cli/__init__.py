"""The ``finer`` command line.

    finer build NAME (--source DIR | --sample) --out DIR [options]   build a dataset folder (= a Hub repo)
    finer verify DATASET                                             check a folder against its manifest
    finer release DATASET --to REPO_DIR                              commit + tag v<VERSION> in a git repo
    finer diff OLD NEW [--json]                                      what changed between two versions
    finer publish DATASET --repo ORG/NAME [--private] [--dry-run]    upload to the Hub and tag
    finer score DATASET --predictions FILE --out DIR [...]           paired accuracy and more
    finer compare RUN_DIR RUN_DIR... --out DIR [...]                 runs side by side, paired test per setting
    finer export DATASET --format FORMAT --out FILE [...]            files for other tools (VLMEvalKit, lmms-eval, LLaMA-Factory)
    finer merge NAME --source DIR --parts P1 .. PN --out DIR         join part builds (--part I/N) into one release
    finer list                                                       the registered datasets

DATASET is a built folder or a Hub id (``finer/compre_cap``) everywhere. Errors are one line
``error: ...`` on stderr and the exit status of :data:`finer_datasets.errors.EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from finer_datasets._version import __version__
from finer_datasets.errors import EXIT_CODES, FinerError

__all__ = ["main", "guarded", "parser", "positive_int", "positive_float", "non_negative_int", "fraction", "one_line",
           "MAX_ERROR_CHARS"]

_EPILOG = "exit status: " + "; ".join(f"{code} {text.split(':')[0].split(' (')[0]}" for code, text in EXIT_CODES.items())


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {one_line(f'{self.prog}: {message} (see {self.prog} --help)')}\n")


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Show an option's default in its help, unless there is nothing to show (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def _dataset_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET", help="built dataset folder or Hub id (e.g. finer/compre_cap)")


def parser(builder: object = None) -> argparse.ArgumentParser:
    """The argument parser; with a ``builder``, ``build`` also takes that builder's own options."""
    from finer_datasets.cli import build as build_cmd
    from finer_datasets.cli import compare as compare_cmd
    from finer_datasets.cli import data as data_cmd

    fmt = _Defaults
    p = _Parser(prog="finer", description="Build, verify, release, score and export the FINER datasets.",
                                epilog=_EPILOG)
    p.add_argument("--version", action="version", version=f"finer-datasets {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build a dataset folder (= a Hub dataset repo)", formatter_class=fmt,
                       description="Build a FINER dataset from its source into a folder that is exactly a Hub dataset repo.")
    build_cmd.add_arguments(b, builder)

    v = sub.add_parser("verify", help="check a dataset folder against its manifest", formatter_class=fmt,
                       description="Re-hash every file and check the manifest's own digest.")
    _dataset_arg(v)

    r = sub.add_parser("release", help="commit a dataset folder into a git repo and tag it v<VERSION>",
                       formatter_class=fmt, description="Lay a verified dataset folder into a local git repository "
                       "(branch main) as one commit tagged v<VERSION> and print what changed since the previous "
                       "tag. Refused (exit status 4, nothing written): another dataset than the repository's "
                       "releases, a version not above the last release, a released version with other content; "
                       "a released version with the same content is a no-op (exit status 0).")
    _dataset_arg(r)
    r.add_argument("--to", type=Path, required=True, help="git repository (created when missing or empty)")

    d = sub.add_parser("diff", help="what changed between two versions of a dataset", formatter_class=fmt,
                       description="Compare two versions of a dataset: versions and manifest digests, counts per "
                       "setting (subset), pairs (tuples) added, removed and changed by id, whether question ids "
                       "are stable, bytes per file group. Exit status 0 whether or not they differ.")
    for name, which in (("old", "the earlier version"), ("new", "the later version")):
        d.add_argument(name, metavar=name.upper(), help=f"{which}: a dataset folder, REPO_DIR@REVISION (a release "
                       "repository at a tag, read with git archive) or ORG/NAME@REVISION (a Hub id)")
    d.add_argument("--json", action="store_true", help="print the comparison as JSON instead of text")

    u = sub.add_parser("publish", help="upload a dataset folder to the Hub and tag it v<VERSION>", formatter_class=fmt,
                       description="Create the Hub repo if needed, upload, check the remote against the manifest, tag.")
    _dataset_arg(u)
    u.add_argument("--repo", required=True, help="dataset repo id ORG/NAME, e.g. finer/compre_cap")
    u.add_argument("--private", action="store_true", help="create the repo as private")
    u.add_argument("--dry-run", action="store_true", help="print the plan (files, sizes, tag) and touch nothing")

    s = sub.add_parser("score", help="score a predictions file (paired accuracy and more)", formatter_class=fmt,
                       description="Score raw model answers: paired accuracy per setting, by k and position, FP/FN "
                       "rates, bootstrap CI; writes report.json, report.md and plots.")
    data_cmd.add_score_arguments(s)

    c = sub.add_parser("compare", help="compare scored runs: one table and a paired test per setting",
                       formatter_class=fmt, description="Put scored runs (report folders of finer score or "
                       "baselines/score.py) side by side on the pairs they share: paired accuracy per setting with 95% "
                       "intervals, Δ against a baseline run and a paired significance test per setting; writes "
                       "compare.md, compare.csv and compare.png. Runs on different datasets or prompts are refused "
                       "unless allowed.")
    compare_cmd.add_arguments(c)

    x = sub.add_parser("export", help="export the questions for other evaluation tools", formatter_class=fmt,
                       description="Write the questions in another tool's format (images byte for byte).")
    data_cmd.add_export_arguments(x)

    g = sub.add_parser("merge", help="join part builds (--part I/N) into one release", formatter_class=fmt,
                       description="Join the part builds of one source (built on several machines with --part I/N) "
                       "into one dataset folder, byte-identical to a one-machine build; no model, no network.")
    build_cmd.add_merge_arguments(g, builder)

    sub.add_parser("list", help="list the registered datasets", description="List the registered datasets.")
    return p


def _run(args: argparse.Namespace, builder: object) -> int:
    from finer_datasets.cli import build as build_cmd
    from finer_datasets.cli import data as data_cmd

    if args.command == "build":
        return build_cmd.run(args, builder)
    if args.command == "merge":
        return build_cmd.run_merge(args, builder)
    if args.command == "compare":
        from finer_datasets.cli import compare as compare_cmd

        return compare_cmd.run(args)
    if args.command == "list":
        from finer_datasets.core.registry import builder_classes

        for name, cls in builder_classes().items():
            print(f"{name:<12} {cls.pretty_name}")
        return 0
    return data_cmd.COMMANDS[args.command](args)


def _builder_for(argv: list[str]) -> object:
    """The builder named after ``build`` / ``merge`` (its options join the parser), or ``None``."""
    command = next((c for c in ("build", "merge") if c in argv), None)
    if command is None:
        return None
    i = argv.index(command)
    if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
        from finer_datasets.core.registry import get_builder

        return get_builder(argv[i + 1])
    return None


#: the longest error line printed; a longer message is cut, saying how long it was
MAX_ERROR_CHARS = 2000


def one_line(message: object, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` as one line of at most ``limit`` characters (whitespace collapsed; a longer one
    is cut and says how many characters it had)."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]} ... (message cut: {len(text):,} characters in all)"


def guarded(run: Callable[[], int], *, interrupted: str = "interrupted; temporary output removed") -> int:
    """Run a command: errors become one ``error: ...`` line (at most :data:`MAX_ERROR_CHARS`
    characters, whatever the input held) and their exit status
    (:data:`~finer_datasets.errors.EXIT_CODES`), Ctrl-C exits 130. Used by ``finer`` and the
    scripts in ``baselines/``."""
    try:
        return run()
    except FinerError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"error: {interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed by its reader (`| head`): the work is done, stay quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # Hub/HTTP errors: a message, never a traceback with request headers
        if type(exc).__module__.split(".")[0] not in ("huggingface_hub", "httpx", "httpx2", "requests"):
            raise
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if "-v" in argv or "--verbose" in argv else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")

    def run() -> int:
        builder = _builder_for(argv)
        return _run(parser(builder).parse_args(argv), builder)

    return guarded(run)
