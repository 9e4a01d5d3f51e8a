"""lmms-eval loads this file by path; the functions live in finer_datasets.eval.lmms."""

from finer_datasets.eval.lmms import *  # noqa: F401,F403
