"""The FINER lmms-eval task files (YAML); ``LMMS_EVAL_PLUGINS=finer_datasets.eval.lmms`` finds this folder."""
