"""Running the tasks of one build on datatrove's executors (``finer build ... --executor``).

datatrove (Hugging Face's pipeline library behind FineWeb; the optional extra ``[scale]``,
imported only here and only when an executor is asked for) gives each task a ``rank`` out of
``world_size``, runs the tasks on this machine (``LocalPipelineExecutor``, a process pool), a
Slurm cluster (``SlurmPipelineExecutor``, a job array) or a Ray cluster (``RayPipelineExecutor``),
and leaves a completion marker per finished task, so a rerun with the same logging folder skips
what finished. This layer knows no dataset and no command line: it runs ``work(rank, world_size)``
as the ``tasks`` tasks of one stage and then ``finish(0, 1)`` as one dependent task
(:func:`run_stages`); the command line (:mod:`finer_datasets.cli.scaled`) makes them the part
builds and their merge.
"""

from finer_datasets.scale.executors import (
    EXECUTORS,
    Plan,
    Slurm,
    Task,
    TaskError,
    TaskFailed,
    check_plan,
    claim_logging_dir,
    forget_stage,
    run_stages,
    stage_done,
)

__all__ = ["EXECUTORS", "Plan", "Slurm", "Task", "TaskError", "TaskFailed", "check_plan", "claim_logging_dir",
           "forget_stage", "run_stages", "stage_done"]
