"""FINER-Tuning's preference data: tuples (x, q, a+, a-) from phrases, and the formats trainers read.

    construct.py    pure, seeded construction: phrases -> candidate tuples -> selection, splits, parts
    templates.py    the yes/no question templates of Obj, Attr, Rel: the paper's five (appendix G) or ours
    configs.py      PRESETS: the paper's training set and its ablations (Tables 4 and 5), their sizes
    records.py      per-image record -> rows: trl_rows (TRL DPO), sft_rows (SFT ablation)
    llamafactory.py export to LLaMA-Factory's sharegpt ranking/SFT format, and a format check

The record of one image (the shards' json member) is ``schemas/tuning_image.schema.json``.

Nothing here imports ``datasets``, ``torch`` or a model library.
"""
