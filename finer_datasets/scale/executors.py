"""Two stages on one datatrove executor: ``tasks`` tasks, then one task that depends on them.

Layout of the logging folder (``--logging-dir``), which a rerun resumes:

* ``.finer-output.json`` and ``finer-run.json``: the folder is ours, and which run it holds (a
  rerun with other options or another number of tasks is refused: its completion markers would
  lie);
* ``parts/`` and ``merge/``: datatrove's logging folder of each stage (``completions/NNNNN``,
  the completion markers; ``logs/task_NNNNN.log``; ``stats/``), and ``errors/NNNNN.json``, the
  one-line error and exit status of a task that failed on purpose;
* whatever the work writes (the command line puts the part builds under ``builds/``).

Local and Ray stages run one after the other here, and a stage with an unfinished task stops the
run with that task's error; Slurm gets both stages submitted at once, the second as a job that
starts after every task of the first succeeded (``afterok``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from finer_datasets.core.guard import claim_folder, write_file
from finer_datasets.errors import FinerError, UsageError

__all__ = ["EXECUTORS", "Plan", "Slurm", "Task", "TaskError", "TaskFailed", "claim_logging_dir", "run_stages",
           "stage_done", "forget_stage", "check_plan"]

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "ray")
STAGES = ("parts", "merge")
_CLAIM = "finer build --executor"  # the marker's command: a logging folder another tool wrote is never used
_RUN = "finer-run.json"
_INSTALL = "pip install 'finer-datasets[scale]'"


@dataclass(frozen=True)
class Slurm:
    """What a Slurm job asks for; ``setup`` is run first in each job (default: this Python's
    environment first on PATH, so ``launch_pickled_pipeline`` is this installation's)."""

    partition: str
    time: str = "24:00:00"
    cpus_per_task: int = 4
    mem_per_cpu_gb: float = 2.0
    qos: str | None = None
    setup: str | None = None

    def setup_command(self) -> str:
        if self.setup is not None:
            return self.setup
        return f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\""


@dataclass(frozen=True)
class Plan:
    """Where and how the tasks run: ``workers`` tasks at once (``None``: all of them; on Slurm,
    array tasks at once), ``name`` the job names' prefix."""

    executor: str
    tasks: int
    logging_dir: Path
    workers: int | None = None
    name: str = "finer"
    slurm: Slurm | None = None

    def folder(self, stage: str) -> Path:
        return self.logging_dir / stage


class TaskFailed(Exception):
    """A task that failed on purpose, as one line and an exit status (plain arguments: it crosses
    process boundaries)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message, exit_code)
        self.message, self.exit_code = message, exit_code

    def __str__(self) -> str:
        return self.message


class TaskError(FinerError):
    """A stage that did not finish: the first failed task's error and exit status."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Task:
    """A datatrove pipeline step that runs ``work(rank, world_size)``; a :class:`FinerError` is
    recorded in ``errors/RANK.json`` (read back by :func:`run_stages`) and fails the task, which
    then leaves no completion marker."""

    def __init__(self, work: Callable[[int, int], Any], errors: Path):
        self.work, self.errors = work, Path(errors)

    def __call__(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Any:
        record = self.errors / f"{rank:05d}.json"
        try:
            self.work(rank, world_size)
        except FinerError as exc:
            message = " ".join(str(exc).split())
            self.errors.mkdir(parents=True, exist_ok=True)
            write_file(record, json.dumps({"message": message, "exit_code": exc.exit_code}) + "\n")
            raise TaskFailed(message, exc.exit_code) from None
        record.unlink(missing_ok=True)
        return data

    def __repr__(self) -> str:
        return f"finer task: {self.work!r}"


#: loguru (datatrove's logger) without its extended tracebacks, which print every local variable of
#: every frame (the command's arguments among them) when a task fails; read when loguru is first
#: imported, and inherited by the task processes (local pool, Slurm jobs: --export=ALL; Ray: runtime_env)
_LOGURU = {"LOGURU_BACKTRACE": "False", "LOGURU_DIAGNOSE": "False"}


def check_plan(plan: Plan) -> None:
    """A :class:`UsageError` for a plan that cannot start here (datatrove, ray or sbatch missing);
    nothing is written."""
    if plan.executor not in EXECUTORS:
        raise UsageError(f"--executor {plan.executor!r}: use one of {', '.join(EXECUTORS)}")
    for name, value in _LOGURU.items():
        os.environ.setdefault(name, value)
    try:
        import datatrove.executor  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--executor needs datatrove (the optional extra [scale]): {_INSTALL} ({exc})") from None
    if plan.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--executor ray needs ray: pip install ray (the tasks join the cluster of RAY_ADDRESS, "
                         "else a local one)")
    if plan.executor == "slurm":
        if plan.slurm is None or not plan.slurm.partition:
            raise UsageError("--executor slurm needs --slurm-partition NAME")
        if shutil.which("sbatch") is None:
            raise UsageError("--executor slurm needs sbatch on PATH: run it on a Slurm login node")


def claim_logging_dir(plan: Plan, identity: dict[str, Any], *, protected: Sequence[Path] = ()) -> Path:
    """Claim ``plan.logging_dir`` (new, empty or ours) and check that it holds this run
    (``identity``, recorded on the first run); return it resolved."""
    folder = claim_folder(plan.logging_dir, _CLAIM, option="--logging-dir", protected=protected)
    recorded_path = folder / _RUN
    if recorded_path.is_file():
        recorded = json.loads(recorded_path.read_text("utf-8"))
        differ = sorted(k for k in set(recorded) | set(identity) if recorded.get(k) != identity.get(k))
        if differ:
            raise UsageError(f"--logging-dir {plan.logging_dir} holds the tasks of another run (it differs in "
                             f"{', '.join(differ)}); resume that run with its options or give a new --logging-dir")
    else:
        write_file(recorded_path, json.dumps(identity, indent=1, sort_keys=True) + "\n")
    return folder


def stage_done(plan: Plan, stage: str, tasks: int = 1) -> bool:
    """Whether every task of ``stage`` left its completion marker."""
    return all((plan.folder(stage) / "completions" / f"{r:05d}").is_file() for r in range(tasks))


def forget_stage(plan: Plan, stage: str) -> None:
    """Remove the completion markers of ``stage`` (its result is gone: run it again)."""
    shutil.rmtree(plan.folder(stage) / "completions", ignore_errors=True)


def _executor(dt: Any, plan: Plan, work: Callable[[int, int], Any], stage: str, tasks: int, workers: int | None,
              depends: Any = None) -> Any:
    folder = plan.folder(stage)
    common = {"pipeline": [Task(work, folder / "errors")], "tasks": tasks, "logging_dir": str(folder),
              "skip_completed": True}
    if plan.executor == "local":
        return dt.LocalPipelineExecutor(**common, workers=min(workers or tasks, tasks))
    if plan.executor == "ray":
        return dt.RayPipelineExecutor(**common, workers=workers or -1)
    s = plan.slurm
    return dt.SlurmPipelineExecutor(**common, workers=workers or -1, time=s.time, partition=s.partition,
                                    cpus_per_task=s.cpus_per_task, mem_per_cpu_gb=s.mem_per_cpu_gb, qos=s.qos or "",
                                    job_name=f"{plan.name}-{stage}", env_command=s.setup_command(), depends=depends)


def _finish(executor: Any, plan: Plan, stage: str, label: str, tasks: int) -> None:
    """Run a local or Ray stage; a :class:`TaskError` naming the first unfinished task."""
    try:
        executor.run()
    except TaskFailed:
        pass  # the task's record says it (and the other tasks' markers say what finished)
    missing = executor.get_incomplete_ranks(skip_completed=True)
    if not missing:
        return
    folder = plan.folder(stage)
    for rank in missing:
        record = folder / "errors" / f"{rank:05d}.json"
        if record.is_file():
            error = json.loads(record.read_text("utf-8"))
            message, code = error["message"], error["exit_code"]
            break
    else:
        rank, message, code = missing[0], "the task did not finish", 1
    raise TaskError(f"{label} {rank + 1} of {tasks} failed: {message} (log: {folder / 'logs'}/task_{rank:05d}.log; "
                    f"{len(missing)} of {tasks} unfinished; run the same command again to resume: finished tasks "
                    "are skipped)", code)


def run_stages(plan: Plan, work: Callable[[int, int], Any], finish: Callable[[int, int], Any],
               labels: tuple[str, str] = ("task", "final task")) -> str:
    """Run ``work(rank, plan.tasks)`` for every rank, then ``finish(0, 1)``; skip what a previous
    run finished. ``work`` and ``finish`` must pickle (module-level classes): the tasks may run in
    other processes or on other machines. Returns a line saying what happened."""
    check_plan(plan)
    import datatrove.executor as dt

    if plan.executor == "slurm":
        parts = _executor(dt, plan, work, STAGES[0], plan.tasks, plan.workers)
        merge = _executor(dt, plan, finish, STAGES[1], 1, None, depends=parts)
        merge.run()  # submits the parts' job array first, then the merge after it (afterok)
        return (f"submitted to Slurm: {plan.tasks} {labels[0]}(s) as job {parts.job_id}, the {labels[1]} as job "
                f"{merge.job_id} once they all succeed; logs and completion markers in {plan.logging_dir}")
    if plan.executor == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(runtime_env={"env_vars": {k: os.environ[k] for k in _LOGURU}})
    _finish(_executor(dt, plan, work, STAGES[0], plan.tasks, plan.workers), plan, STAGES[0], labels[0], plan.tasks)
    _finish(_executor(dt, plan, finish, STAGES[1], 1, 1), plan, STAGES[1], labels[1], 1)
    return f"{plan.tasks} {labels[0]}(s) and the {labels[1]} finished; logs and completion markers in {plan.logging_dir}"
