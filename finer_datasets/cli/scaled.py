"""``finer build NAME ... --executor local|slurm|ray --tasks N --logging-dir DIR``.

The build runs as ``N`` part builds (``--part I/N``: the primitive underneath, each a complete,
verified folder with its own transcript, under ``DIR/builds/``) and one dependent task that merges
them into ``--out`` (``finer merge``), on a datatrove executor (:mod:`finer_datasets.scale`).
The release is byte-identical to a one-machine build of the same command, whatever the executor,
the number of tasks or their order: the parts are disjoint by what the prompts depend on, and the
merge replays their answers and records the one-machine command. A rerun of the same command
with the same ``--logging-dir`` skips the finished tasks (datatrove's completion markers); a killed
part build resumes from its own transcript, so no answered prompt is asked again.

Only builders that can be built in parts (``part_of``/``merge_options`` and a ``--part``
option; FINER-Tuning) take ``--executor``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from finer_datasets.cli import positive_float, positive_int
from finer_datasets.errors import UsageError, VerificationError

__all__ = ["add_executor_arguments", "run_scaled", "PartBuild", "MergeBuild", "part_folder", "refuse_orphans"]

#: the options that only mean something with --executor
_WITH_EXECUTOR = ("tasks", "workers", "logging_dir", "slurm_partition", "slurm_qos", "slurm_setup")


def add_executor_arguments(b: argparse.ArgumentParser) -> None:
    from finer_datasets.scale import EXECUTORS

    g = b.add_argument_group("several workers or machines (datatrove executors: pip install 'finer-datasets[scale]')")
    g.add_argument("--executor", choices=EXECUTORS,
                   help="run the build as --tasks part builds (--part I/N, each with its own transcript under "
                        "--logging-dir) and one dependent merge task into --out, on datatrove's local, Slurm or Ray "
                        "executor; a rerun skips the finished tasks; the release is byte-identical to a one-machine "
                        "build (FINER-Tuning)")
    g.add_argument("--tasks", type=positive_int, metavar="N", help="number of part builds (with --executor)")
    g.add_argument("--workers", type=positive_int, metavar="W",
                   help="tasks at once (default: all; local: processes, slurm: array tasks, ray: tasks)")
    g.add_argument("--logging-dir", type=Path, metavar="DIR", help="the run's folder (with --executor): completion markers, logs, "
                   "the part builds and their transcripts; shared by every machine; the same folder resumes a run")
    g.add_argument("--slurm-partition", metavar="NAME", help="Slurm partition (with --executor slurm)")
    g.add_argument("--slurm-time", default="24:00:00", metavar="TIME", help="time limit of one Slurm task")
    g.add_argument("--slurm-cpus-per-task", type=positive_int, default=4, metavar="N", help="CPUs of one Slurm task")
    g.add_argument("--slurm-mem-per-cpu-gb", type=positive_float, default=2.0, metavar="GB", help="memory per CPU of a Slurm task")
    g.add_argument("--slurm-qos", metavar="QOS", help="Slurm QOS (default: the cluster's)")
    g.add_argument("--slurm-setup", metavar="COMMAND", help="shell command run first in each Slurm job (default: "
                   "put this Python environment first on PATH)")


def refuse_orphans(args: argparse.Namespace) -> None:
    """A :class:`UsageError` for an option of several workers given without ``--executor``."""
    given = [f"--{name.replace('_', '-')}" for name in _WITH_EXECUTOR if getattr(args, name, None) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} only work with --executor local|slurm|ray")


def part_folder(root: Path, i: int, n: int) -> Path:
    """Where part ``i`` of ``n`` is built (its transcript and image cache beside it)."""
    return Path(root) / "builds" / f"part-{i:05d}-of-{n:05d}"


class PartBuild:
    """Task ``rank``: ``finer build ... --part rank+1/world_size`` into its own folder."""

    def __init__(self, args: argparse.Namespace, root: Path):
        self.args, self.root = args, root

    def __call__(self, rank: int, world_size: int) -> None:
        from finer_datasets.cli.build import run
        from finer_datasets.core.registry import get_builder

        out = part_folder(self.root, rank + 1, world_size)
        # --overwrite: a part that finished its folder but was killed before its completion marker is rebuilt
        # (from its transcript, without a model call); the folder is this run's own
        args = argparse.Namespace(**{**vars(self.args), **dict.fromkeys(_WITH_EXECUTOR), "executor": None,
                                     "part": (rank + 1, world_size), "out": out, "overwrite": True, "no_progress": True})
        if not args.replay:
            args.transcript = out.with_name(out.name + ".transcript.sqlite")
        run(args, get_builder(args.dataset))

    def __repr__(self) -> str:
        return f"part build of {self.args.dataset}"


class MergeBuild:
    """The dependent task: ``finer merge`` of every part into ``--out``."""

    def __init__(self, args: argparse.Namespace, root: Path):
        self.args, self.root = args, root

    def __call__(self, rank: int, world_size: int) -> None:
        from finer_datasets.cli.build import run_merge
        from finer_datasets.core.registry import get_builder

        n = self.args.tasks
        args = argparse.Namespace(**{**vars(self.args), "parts": [part_folder(self.root, i, n) for i in range(1, n + 1)],
                                     "no_progress": True})
        run_merge(args, get_builder(args.dataset))

    def __repr__(self) -> str:
        return f"merge of the {self.args.tasks} parts of {self.args.dataset} into {self.args.out}"


def _plan(args: argparse.Namespace) -> Any:
    from finer_datasets.scale import Plan, Slurm

    if args.tasks is None:
        raise UsageError("--executor needs --tasks N (the number of part builds)")
    if args.logging_dir is None:
        raise UsageError("--executor needs --logging-dir DIR (completion markers, logs and the part builds; the same "
                         "folder resumes the run)")
    slurm = None
    if args.executor == "slurm":
        slurm = Slurm(partition=args.slurm_partition or "", time=args.slurm_time, cpus_per_task=args.slurm_cpus_per_task,
                      mem_per_cpu_gb=args.slurm_mem_per_cpu_gb, qos=args.slurm_qos, setup=args.slurm_setup)
    return Plan(executor=args.executor, tasks=args.tasks, workers=args.workers, logging_dir=args.logging_dir,
                name=f"finer-{args.dataset}", slurm=slurm)


def _absolute(args: argparse.Namespace) -> argparse.Namespace:
    """The same arguments with absolute paths: the tasks may run in another folder or on another machine."""
    return argparse.Namespace(**{k: v.absolute() if isinstance(v, Path) and str(v) != "sample" else v
                                 for k, v in vars(args).items()})


def _identity(args: argparse.Namespace, builder: Any, source: Path) -> dict[str, Any]:
    """What the tasks of a logging folder belong to: a rerun must agree, or its markers would lie."""
    from finer_datasets.cli.build import canonical_command

    model = {k: getattr(args, k) for k in ("llm_model", "llm_stages", "mllm_model", "mllm_local")}
    return {"command": canonical_command(args, builder), "source": str(source), "out": str(args.out),
            "tasks": args.tasks, "model": model, "replay": str(args.replay) if args.replay else None,
            "shards": [args.shard_samples, args.shard_bytes], "max_skip_rate": args.max_skip_rate}


def _built(out: Path) -> bool:
    from finer_datasets.core.manifest import verify

    try:
        verify(out)
    except (VerificationError, OSError):
        return False
    return True


def run_scaled(args: argparse.Namespace, builder: Any) -> int:
    """``finer build ... --executor``: check everything that can be checked here, then run."""
    from finer_datasets import scale
    from finer_datasets.cli.build import source_of
    from finer_datasets.core.builder import DatasetBuilder
    from finer_datasets.core.output import check_output

    if type(builder).merge_options is DatasetBuilder.merge_options:
        raise UsageError(f"--executor: {builder.pretty_name} cannot be built in parts (its builder has no "
                         "part_of/merge_options); build it without --executor")
    if getattr(args, "part", None) is not None:
        raise UsageError("--part and --executor exclude each other: the executor builds every part (--tasks N)")
    if args.transcript is not None:
        raise UsageError("--transcript and --executor exclude each other: each task records its own transcript "
                         "beside its part build under --logging-dir")
    if builder.requires_llm and not (args.llm_base_url or args.llm_model or args.replay or args.sample):
        raise UsageError(f"{builder.pretty_name} needs a model: pass --llm-base-url and --llm-model, or --replay "
                         "TRANSCRIPT")
    if bool(args.llm_base_url) != bool(args.llm_model):
        raise UsageError("--llm-base-url and --llm-model go together")
    args = _absolute(args)
    plan = _plan(args)
    scale.check_plan(plan)
    builder, _, source, protected = source_of(args, builder)
    identity = _identity(args, builder, source)
    if scale.stage_done(plan, "merge") and _built(args.out):
        scale.claim_logging_dir(plan, identity, protected=[*protected, args.out])
        print(f"every task of {plan.logging_dir} has finished: the release is {args.out} (nothing to do)")
        return 0
    check_output(args.out, protected=[*protected, plan.logging_dir], overwrite=args.overwrite)
    root = scale.claim_logging_dir(plan, identity, protected=[*protected, args.out])
    scale.forget_stage(plan, "merge")  # its release is gone (or never was): merge again
    print(scale.run_stages(plan, PartBuild(args, root), MergeBuild(args, root), labels=("part build", "merge")))
    return 0
