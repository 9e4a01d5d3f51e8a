"""``python -m finer_datasets.eval.lmms``: print the folder of the FINER lmms-eval tasks (for ``--include_path``)."""

from finer_datasets.eval.lmms import TASKS_DIR

print(TASKS_DIR)
